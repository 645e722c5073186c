"""Train a small CNN on the sample dataset, streamed by the augstream replicas.

The API key comes from the compose secret; the server from AUGSTREAM_URL.
"""

import os
from pathlib import Path

import keras

from augstream import ImageDataGenerator

key = Path("/run/secrets/augstream_keys").read_text().split()[0]
gen = ImageDataGenerator(
    rotation_range=20,
    zoom_range=0.1,
    horizontal_flip=True,
    rescale=1 / 255,
    validation_split=0.2,
    api_key=key,
)
args = {"target_size": (64, 64), "batch_size": 64, "seed": 1}
train = gen.flow_from_directory("shapes", subset="training", **args)
valid = gen.flow_from_directory("shapes", subset="validation", shuffle=False, **args)
model = keras.Sequential(
    [
        keras.Input((64, 64, 3)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(train.num_classes, activation="softmax"),
    ]
)
model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
model.fit(train, validation_data=valid, epochs=int(os.environ.get("EPOCHS", "5")))
