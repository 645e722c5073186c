"""A dataset whose store cannot be listed answers with that failure for ``recheck_s`` before
the store is asked again; a refresh asks at once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from augstream_service import catalog as catalog_module
from augstream_service.catalog import Dataset, DatasetUnavailableError
from augstream_service.sources import Listing, SourceError
from augstream_service.stores import Store


def test_a_failed_listing_is_not_retried_within_recheck_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[float] = []
    real = catalog_module.list_class_folders

    def flaky(store: Store) -> Listing:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise SourceError("the store did not answer", transient=True)
        return real(store)

    monkeypatch.setattr(catalog_module, "list_class_folders", flaky)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.png").write_bytes(b"")
    dataset = Dataset("pets", Store(str(tmp_path)), recheck_s=0.5)
    for _ in range(5):  # one store request; the other four answer at once, the same way
        with pytest.raises(DatasetUnavailableError, match="did not answer") as caught:
            _ = dataset.listing
        assert caught.value.transient
    assert len(attempts) == 1
    time.sleep(0.6)
    with pytest.raises(DatasetUnavailableError):
        _ = dataset.listing
    assert len(attempts) == 2
    # An explicit refresh asks the store now, and a listing clears the failure.
    assert dataset.refresh().class_names == ("cat",)
    assert len(attempts) == 3
    assert dataset.listing.class_names == ("cat",)
    assert len(attempts) == 3
