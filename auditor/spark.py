"""The Spark engine's inputs: one SparkSession, datasets read by Spark with their file row numbers, and
reproducible samples for the checks that run in memory.

With ``--engine spark`` a dataset is never collected whole to the driver. Each row carries its row number
in the file (column :data:`ROW`, 0-based, the contract's meaning), so findings name the same rows on both
engines. For a folder of part files (or a glob), rows are numbered through the files in path order.

How the row number is found without a shuffle: each scan split reads a contiguous run of one file, in
order, inside one task, so ``monotonically_increasing_id()`` (partition index << 33 + position in the
partition) is consecutive within a split. One small aggregation (a row per split: its smallest id and its
row count) gives each split's offset in the concatenated files; the row number is then ``id + delta``,
with the deltas in a literal map. Parquet splits start at row-group boundaries (Spark's ``row_index``
metadata column agrees; a test checks both against pandas).

PySpark is optional (``pip install 'auditor[spark]'``); nothing here is imported unless the engine is used.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field

from auditor.errors import AuditorError, InputError
from auditor.hashing import sha256_file

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from auditor.inputs import Dataset

#: the row-number column added to every dataset read by Spark (named so no real column clashes)
ROW = "__auditor_row__"
_SPLIT_FILE, _SPLIT_START, _MONO = "__auditor_file__", "__auditor_split__", "__auditor_mono__"
SPARK_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl",
                 ".json": "jsonl"}
_LOG4J = Path(__file__).with_name("log4j2-spark.properties")


class SparkSettings(BaseModel):
    """``spark:`` in audit.yaml: where and how the Spark engine runs."""

    model_config = ConfigDict(extra="forbid")

    master: str = Field("local[*]", description="Spark master URL (local[2], spark://host:7077, yarn, ...)")
    driver_memory: str = Field("2g", description="spark.driver.memory: the driver's heap, bounded")
    format: str | None = Field(None, description="csv, parquet or jsonl for paths without a telling extension")
    csv_multiline: bool = Field(
        True, description="quoted CSV fields may hold newlines, as the pandas engine reads them; each CSV file is "
        "then read by one task. false splits big CSV files across tasks, but a quoted newline would split a row")
    conf: dict[str, str] = Field(default_factory=dict, description="more Spark configuration, e.g. spark.local.dir")


# PySpark 4 warns on every import path that it "does not yet fully support pandas >= 3": the engine moves data
# with Arrow (toArrow) and never through PySpark's pandas conversion, so the warning is noise on stderr
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)

_lock = threading.Lock()
_session: "SparkSession | None" = None
_settings: "SparkSettings | None" = None  # the settings _session was started with


def require_pyspark() -> None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise AuditorError("--engine spark needs PySpark: pip install 'auditor[spark]' (and a Java 17+ runtime)") from None


#: JVM options for the driver (in local mode the executors' heap too), before any the user adds. On JDK 17,
#: a task thread allocating while another holds a JNI critical region (zstd Parquet decompression) gives up
#: after 2 retries with a false "Java heap space" (JDK-8192647; the GC log says "Retried waiting for GCLocker
#: too often"). Measured on the 50M-row benchmark: data.validation died in a 2 GiB heap without the option
#: and completed with it. JVMs without the option ignore it.
JVM_OPTIONS = ("-XX:+IgnoreUnrecognizedVMOptions", "-XX:+UnlockDiagnosticVMOptions",
               "-XX:GCLockerRetryAllocationCount=100")

#: Spark's 128 MiB per scan task is sized for executors with gigabytes per core; with the bounded driver
#: heap of local mode (2 GiB for all tasks) a smaller split keeps each task's decoded rows and cached blocks
#: small. audit.yaml's ``spark.conf`` overrides it.
MAX_PARTITION_BYTES = "32m"


def session(settings: SparkSettings | None = None) -> "SparkSession":
    """The process's SparkSession, started on first use with ``settings`` (later calls reuse it)."""
    global _session, _settings
    require_pyspark()
    with _lock:
        if _session is not None:
            return _session
        settings = settings or SparkSettings()
        from pyspark.sql import SparkSession

        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        conf = dict(settings.conf)
        java_opts = " ".join([f"-Dlog4j2.configurationFile=file:{_LOG4J}", *JVM_OPTIONS,
                              conf.pop("spark.driver.extraJavaOptions", "")]).strip()
        builder = (
            SparkSession.builder.appName("auditor")
            .master(settings.master)
            .config("spark.driver.memory", settings.driver_memory)
            .config("spark.driver.extraJavaOptions", java_opts)
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", "16")
            .config("spark.sql.ansi.enabled", "false")
            # Parquet TIMESTAMP(NANOS) (pandas < 3's default) is otherwise unreadable; read as int64 ns, and
            # ``read`` turns the columns back into timestamps
            .config("spark.sql.legacy.parquet.nanosAsLong", "true")
            .config("spark.sql.files.maxPartitionBytes", MAX_PARTITION_BYTES)
        )
        for key, value in conf.items():
            builder = builder.config(key, value)
        try:
            _session = builder.getOrCreate()
        except Exception as e:  # no Java, a bad master URL, ...: one line, exit 2
            text = " ".join(str(e).split())[:300]
            hint = " (PySpark needs a Java 17+ runtime: apt-get install openjdk-17-jre-headless)" if "JAVA" in text.upper() else ""
            raise AuditorError(f"cannot start Spark ({settings.master}): {text}{hint}") from None
        _session.sparkContext.setLogLevel("ERROR")
        _settings = settings
        return _session


def persist(df: "DataFrame") -> "DataFrame":
    """``df`` cached for the rest of a check, on the executors' local disks (``spark.local.dir``).

    Not in memory: in local mode the cache shares the bounded driver heap with the running tasks, and a
    check caches frames as large as its input (a 10M-row dataset's canonical values); Spark's memory store
    then fills the heap with blocks it must unroll before it can evict them. A disk cache streams blocks
    out as they are built and is read back through the OS page cache: measured on the 10M-row benchmark,
    leakage.near_duplicates ran out of a 2 GiB heap with memory caching and completed with disk caching."""
    from pyspark import StorageLevel

    return df.persist(StorageLevel.DISK_ONLY)


def failure_reason(exc: BaseException) -> str | None:
    """One line for a check that failed because Spark did (its JVM out of heap, stopped, or gone), with what
    to change; None for any other failure. In local mode an executor's OutOfMemoryError stops the JVM, so
    the first check sees a stopped SparkContext and the later ones a refused connection."""
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    oom = "OutOfMemoryError" in text
    gone = oom or "SparkContext was shut down" in text or "dagScheduler()\" is null" in text \
        or name in ("Py4JNetworkError", "ConnectionRefusedError", "ConnectionResetError") or not jvm_alive()
    if not gone:
        return None
    why = "ran out of heap memory" if oom else "stopped (most often: out of heap memory in a task)"
    held = f" (driver_memory {_settings.driver_memory})" if _settings is not None else ""
    return (f"the Spark JVM {why}{held}: give it more with spark.driver_memory in audit.yaml, or smaller "
            f"tasks with spark.conf spark.sql.files.maxPartitionBytes; details on stderr")


def jvm_alive() -> bool:
    """Whether the process's Spark session still answers (False when it was never started)."""
    if _session is None:
        return False
    try:
        return not _session.sparkContext._jsc.sc().isStopped()
    except Exception:  # the gateway's socket is closed: the JVM is gone
        return False


def _is_remote(path: str) -> bool:
    scheme = urlparse(path).scheme
    return len(scheme) > 1 and scheme != "file"


def _local(path: str) -> Path:
    return Path(urlparse(path).path) if path.startswith("file:") else Path(path)


def _digest(path: str) -> tuple[str, str]:
    """(sha256, what it covers): a file's bytes; a folder's files (relative name and sha256 of each, in order);
    for a remote URI, the listing (names, sizes, times) as Hadoop reports it, since the bytes are not local."""
    if _is_remote(path):
        spark = session()
        jvm = spark.sparkContext._jvm
        hpath = jvm.org.apache.hadoop.fs.Path(path)
        fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        entries = []
        for st in fs.globStatus(hpath) or []:
            if st.isDirectory():
                files = fs.listFiles(st.getPath(), True)
                while files.hasNext():
                    f = files.next()
                    entries.append((f.getPath().toString(), f.getLen(), f.getModificationTime()))
            else:
                entries.append((st.getPath().toString(), st.getLen(), st.getModificationTime()))
        if not entries:
            raise InputError("no data files found", path)
        h = hashlib.sha256()
        for name, size, mtime in sorted(entries):
            h.update(f"{name}\t{size}\t{mtime}\n".encode())
        return h.hexdigest(), "listing"
    p = _local(path)
    if p.is_file():
        return sha256_file(p), "content"
    files = _local_files(path)
    if not files:
        raise InputError("no data files found", path)
    base = Path(os.path.commonpath([f.parent for f in files]))
    h = hashlib.sha256()
    for f in files:  # names relative to the folder, so the digest does not depend on where the data sits
        h.update(f"{f.relative_to(base).as_posix()}\t{sha256_file(f)}\n".encode())
    return h.hexdigest(), "content"


def _local_files(path: str) -> list[Path]:
    """The data files of a local folder or glob, sorted (hidden and _SUCCESS-style files left out, as Spark does)."""
    import glob

    p = _local(path)
    roots = [Path(g) for g in glob.glob(str(p))] if any(ch in str(p) for ch in "*?[") else [p]
    found = []
    for root in roots:
        found += [root] if root.is_file() else [f for f in root.rglob("*") if f.is_file()]
    return sorted(f for f in found if not f.name.startswith((".", "_")))


def _format_of(path: str, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in ("csv", "parquet", "jsonl"):
            raise InputError(f"unknown format {fmt!r} (csv, parquet or jsonl)", path)
        return fmt
    name = path.rstrip("/")
    if not _is_remote(path) and _local(path).is_dir():
        exts = {f.suffix.lower() for f in _local_files(path)}
        known = {SPARK_FORMATS[e] for e in exts if e in SPARK_FORMATS}
        if len(known) == 1:
            return known.pop()
        raise InputError("cannot tell the format of the folder's files: set spark.format in audit.yaml", path)
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name.rsplit("/", 1)[-1] else ""
    if suffix == ".npz":
        raise InputError("--engine spark reads tables (CSV, Parquet, JSONL); audit NPZ arrays with --engine pandas", path)
    if suffix not in SPARK_FORMATS:
        raise InputError(f"unknown file extension {suffix or '(none)'!r} for Spark (csv, parquet, jsonl; or set "
                         "spark.format in audit.yaml)", path)
    return SPARK_FORMATS[suffix]


def _one_line(e: BaseException) -> str:
    text = getattr(e, "getMessage", None)
    text = text() if callable(text) else str(e)
    first = " ".join(str(text).split())
    return first.split(" JVM stacktrace:")[0][:300]


def read(spark: "SparkSession", path: str, fmt: str, csv_multiline: bool = True) -> "DataFrame":
    """The file(s) as a DataFrame with :data:`ROW`, the 0-based row number through the files in path order."""
    from pyspark.sql import functions as F

    reader = spark.read
    if fmt == "csv":
        reader = (reader.format("csv").option("header", True).option("inferSchema", True).option("mode", "FAILFAST")
                  .option("multiLine", csv_multiline).option("escape", '"'))
    elif fmt == "jsonl":
        reader = reader.format("json").option("mode", "FAILFAST")
    else:
        reader = reader.format("parquet")
    raw = reader.load(path)
    data_cols = list(raw.columns)
    if fmt == "jsonl":  # Spark's JSON schema inference sorts the fields: restore the file's order
        data_cols = _json_key_order(spark, path, data_cols)
    if fmt == "parquet":
        raw = _nanos_as_timestamps(raw, path)
    scanned = raw.select(
        *[F.col(f"`{c}`") for c in data_cols],
        F.col("_metadata.file_path").alias(_SPLIT_FILE),
        F.col("_metadata.file_block_start").alias(_SPLIT_START),
        F.monotonically_increasing_id().alias(_MONO),
    )
    splits = (
        scanned.groupBy(_SPLIT_FILE, _SPLIT_START)
        .agg(F.min(_MONO).alias("first"), F.count(F.lit(1)).alias("n"))
        .collect()
    )
    splits.sort(key=lambda r: (r[_SPLIT_FILE], r[_SPLIT_START]))
    deltas, offset = [], 0
    for r in splits:
        deltas.append((r[_SPLIT_FILE], r[_SPLIT_START], offset - r["first"]))
        offset += r["n"]
    if not deltas:
        return scanned.select(*[F.col(f"`{c}`") for c in data_cols], F.lit(0).cast("long").alias(ROW)).limit(0)
    key = F.concat_ws("\x00", F.col(_SPLIT_FILE), F.col(_SPLIT_START).cast("string"))
    mapping = F.create_map(*[x for f, s, d in deltas for x in (F.lit(f"{f}\x00{s}"), F.lit(d))])
    return scanned.select(*[F.col(f"`{c}`") for c in data_cols], (F.col(_MONO) + mapping[key]).alias(ROW))


def _nanos_as_timestamps(raw: "DataFrame", path: str) -> "DataFrame":
    """Columns stored as Parquet TIMESTAMP(NANOS), which Spark reads as int64 nanoseconds, back as timestamps
    (to the microsecond, Spark's resolution). Known from a local file's footer; remote ones stay int64."""
    from pyspark.sql import functions as F

    if _is_remote(path):
        return raw
    files = [f for f in _local_files(path) if f.suffix.lower() in (".parquet", ".pq")] if not _local(path).is_file() \
        else [_local(path)]
    if not files:
        return raw
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(files[0])
    except Exception:  # Spark reports an unreadable file better, with its own message
        return raw
    for f in schema:
        if pa.types.is_timestamp(f.type) and f.type.unit == "ns" and f.name in raw.columns:
            micros = F.timestamp_micros(F.floor(F.col(f"`{f.name}`") / 1000))  # the session's zone is UTC
            raw = raw.withColumn(f.name, micros if f.type.tz else micros.cast("timestamp_ntz"))
    return raw


def _json_key_order(spark: "SparkSession", path: str, columns: list[str]) -> list[str]:
    """Columns in the order of the first record's keys (the pandas engine's order), then any others."""
    import json

    first = spark.read.text(path).filter("trim(value) != ''").first()
    try:
        keys = list(json.loads(first[0])) if first is not None else []
    except (ValueError, TypeError):
        keys = []
    ordered = [k for k in keys if k in columns]
    return ordered + [c for c in columns if c not in ordered]


@dataclass
class SparkDataset:
    """A table read by Spark: the DataFrame (data columns in file order, then :data:`ROW`) and its facts."""

    name: str
    path: str
    sha256: str
    digest_of: str  # "content" or "listing"
    format: str
    label: str | None
    df: "DataFrame" = field(repr=False)
    columns: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    n_rows: int = 0
    _text: list[str] | None = field(default=None, repr=False)

    is_array = False
    is_spark = True

    @property
    def has_label(self) -> bool:
        return self.label is not None

    @property
    def feature_columns(self) -> list[str]:
        return [c for c in self.columns if c != self.label and c not in self.excluded]

    def has_attribute(self, name: str) -> bool:
        return name in self.columns

    def dtype(self, column: str) -> str:
        return dict(self.df.dtypes)[column]

    def text_columns(self) -> list[str]:
        """String feature columns whose values average at least TEXT_MIN_MEAN_LENGTH characters (one pass)."""
        if self._text is None:
            from pyspark.sql import functions as F

            from auditor.inputs import TEXT_MIN_MEAN_LENGTH

            strings = [c for c in self.feature_columns if self.dtype(c) == "string"]
            if not strings:
                self._text = []
            else:
                row = self.df.agg(*[F.avg(F.length(F.col(f"`{c}`"))).alias(c) for c in strings]).first()
                self._text = [c for c in strings if row[c] is not None and row[c] >= TEXT_MIN_MEAN_LENGTH]
        return self._text

    def check_model_features(self) -> None:
        numeric = ("tinyint", "smallint", "int", "bigint", "float", "double", "boolean")
        bad = [c for c in self.feature_columns
               if not (self.dtype(c) in numeric or self.dtype(c).startswith("decimal"))]
        if bad:
            raise InputError(
                f"non-numeric feature column(s) {', '.join(map(repr, bad[:5]))} cannot be fed to the model; "
                "leave them out with --exclude (or the policy's exclude)", self.path)

    def sample(self, rows: int, seed: int) -> "Dataset":
        """Up to ``rows`` rows drawn reproducibly (the smallest xxhash64 of row number and seed), in file order,
        as an in-memory Dataset whose ``row_ids`` are the rows' numbers in the file."""
        import numpy as np

        from auditor.inputs import Dataset

        from pyspark.sql import functions as F

        if rows >= self.n_rows:
            picked = self.df
        else:
            key = F.xxhash64(F.col(ROW), F.lit(int(seed)))
            picked = self.df.orderBy(key, F.col(ROW)).limit(int(rows))
        table = picked.orderBy(ROW).toArrow()
        frame = table.to_pandas()
        row_ids = frame.pop(ROW).to_numpy(dtype=np.int64)
        frame.columns = [str(c) for c in frame.columns]
        return Dataset(
            name=self.name, path=Path(self.path), sha256=self.sha256, format=self.format, label=self.label,
            frame=frame.reset_index(drop=True), excluded=self.excluded, row_ids=row_ids,
            sample_of={"rows": int(len(frame)), "of": self.n_rows, "seed": int(seed),
                       "method": "smallest xxhash64(row, seed), drawn by Spark"},
        )

    def describe(self) -> dict:
        return {
            "path": self.path,
            "format": self.format,
            "rows": self.n_rows,
            "label": self.label,
            "features": len(self.feature_columns),
            "excluded": list(self.excluded),
            "engine": "spark",
            "digest": "sha256 of the bytes" if self.digest_of == "content"
            else "sha256 of the file listing (names, sizes, times): the bytes are remote",
        }


def load_dataset(
    path: str | Path, name: str, label: str | None = None, exclude: Sequence[str] = (),
    settings: SparkSettings | None = None,
) -> SparkDataset:
    """Read a table with Spark, as strictly as the pandas reader where it can be done without collecting it."""
    from auditor.inputs import LABEL_CANDIDATES

    settings = settings or SparkSettings()
    text = str(path)
    if not _is_remote(text):
        p = _local(text)
        if not p.exists() and not any(ch in text for ch in "*?["):
            raise InputError("file not found", text)
        if p.is_file() and p.stat().st_size == 0:
            raise InputError("file is empty", text)
    fmt = _format_of(text, settings.format)
    spark = session(settings)
    try:
        digest, digest_of = _digest(text)
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}", text) from None
    try:
        df = read(spark, text, fmt, settings.csv_multiline)
        n_rows = int(df.count())
    except Exception as e:  # AnalysisException, Py4JJavaError (malformed records), ...
        raise InputError(f"Spark cannot read {fmt.upper()}: {_one_line(e)}", text) from None
    columns = tuple(c for c in df.columns if c != ROW)
    if not columns:
        raise InputError("has no columns", text)
    if n_rows == 0:
        raise InputError("has no data rows", text)
    if len(set(columns)) != len(columns):
        dup = next(c for c in columns if columns.count(c) > 1)
        raise InputError(f"duplicate column name {dup!r}", text)
    shown = ", ".join(columns[:12]) + (", ..." if len(columns) > 12 else "")
    if label is not None:
        if label not in columns:
            raise InputError(f"label column {label!r} not found (columns: {shown})", text)
    else:
        label = next((c for c in LABEL_CANDIDATES if c in columns), None)
    missing = [c for c in exclude if c not in columns]
    if missing:
        raise InputError(f"excluded column {missing[0]!r} not found (columns: {shown})", text)
    return SparkDataset(name=name, path=text, sha256=digest, digest_of=digest_of, format=fmt, label=label, df=df,
                        columns=columns, excluded=tuple(exclude), n_rows=n_rows)


def collect_rows(df: "DataFrame", column: str = ROW) -> list[int]:
    """The sorted values of an integer column (flagged row numbers): bounded by what is flagged."""
    return sorted(int(r[0]) for r in df.select(column).toLocalIterator())


__all__ = ["ROW", "SparkDataset", "SparkSettings", "collect_rows", "load_dataset", "read", "session"]
