"""``benchmarks.scaling``'s report: each figure's speedup over the first row's, and the
client's CPU beside them (which says when the client, not the server, set the rate)."""

from __future__ import annotations

from benchmarks.scaling import report, settings_for

_MODES = ("threads cold", "workers cold", "threads warm", "workers warm")


def _row(cores: int, rate: float, client: float) -> dict[str, object]:
    row: dict[str, object] = {"cores": cores}
    for number, mode in enumerate(_MODES):
        row[mode] = rate * (number + 1)
        row[f"{mode} client cpu"] = client
    return row


def test_each_figure_is_shown_with_its_speedup_over_the_first_row() -> None:
    table = report([_row(1, 500.0, 0.1), _row(4, 1500.0, 0.75)])
    lines = table.splitlines()
    assert lines[2] == "| 1 | 500 (1.00x) | 1,000 (1.00x) | 1,500 (1.00x) | 2,000 (1.00x) |"
    assert lines[3] == "| 4 | 1,500 (3.00x) | 3,000 (3.00x) | 4,500 (3.00x) | 6,000 (3.00x) |"


def test_the_clients_cpu_is_reported_for_every_setting() -> None:
    lines = report([_row(1, 500.0, 0.1), _row(4, 1500.0, 0.75)]).splitlines()
    at = lines.index("The client's CPU meanwhile (cores' worth):")
    assert lines[at + 2] == "| cores | " + " | ".join(_MODES) + " |"
    assert lines[at + 4 :] == [
        "| 1 | 0.10 | 0.10 | 0.10 | 0.10 |",
        "| 4 | 0.75 | 0.75 | 0.75 | 0.75 |",
    ]


def test_the_core_counts_are_powers_of_two_and_all_of_them() -> None:
    assert settings_for(list(range(12))) == [1, 2, 4, 8, 12]
    assert settings_for(list(range(16))) == [1, 2, 4, 8, 16]
    assert settings_for([0]) == [1]


def test_uint8_is_the_benchmark_s_work_without_the_float_rescale() -> None:
    from augstream_protocol.spec import StreamSpec
    from benchmarks.comparison.work import SPEC
    from benchmarks.scaling import UINT8

    floats, uint8 = StreamSpec(dataset="d", **SPEC), StreamSpec(dataset="d", **SPEC | UINT8)
    assert (floats.output_dtype, uint8.output_dtype) == ("float32", "uint8")
    assert floats.model_dump(exclude={"rescale", "dtype"}) == uint8.model_dump(
        exclude={"rescale", "dtype"}
    )
