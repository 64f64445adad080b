"""Batch prediction for unlabelled data (``shipyard predict``): a file or folder in, one record
per row out, from a server or from the model's files loaded in this process.

    from shipyard.predict import open_source, read_data, open_writer, predict_data

    source = open_source("runs/titanic-20260101-120000")      # or "http://host:8000", model=...
    data = read_data(Path("passengers.csv"), source.info)
    writer = open_writer(Path("out.csv"), None, sys.stdout, every_class=True,
                         errors_column=False)
    summary = predict_data(source, data, writer)
    writer.close(); source.close()

A server and an in-process model answer alike: both encode items and read outputs with the
client's vocabulary code over the model's V2 metadata. Needs ``shipyard[client]`` for a URL and
``shipyard[serve]`` for an in-process model (never the training half, except to publish a run).
"""

from shipyard.predict._data import IMAGE_SUFFIXES, DataSet, Row, convert, read_data
from shipyard.predict._output import (
    OutputFormat,
    RecordWriter,
    error_record,
    open_writer,
    record,
)
from shipyard.predict._run import DEFAULT_BATCH_SIZE, Summary, default_top_k, predict_data
from shipyard.predict._source import (
    LocalModel,
    PredictError,
    PredictSource,
    RemoteModel,
    is_url,
    open_source,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "IMAGE_SUFFIXES",
    "DataSet",
    "LocalModel",
    "OutputFormat",
    "PredictError",
    "PredictSource",
    "RecordWriter",
    "RemoteModel",
    "Row",
    "Summary",
    "convert",
    "default_top_k",
    "error_record",
    "is_url",
    "open_source",
    "open_writer",
    "predict_data",
    "read_data",
    "record",
]
