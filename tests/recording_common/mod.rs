//! What the recording tests share: pyarrow, another tool, reading the
//! files they write.

use std::path::PathBuf;
use std::process::Command;

/// A python3 that has pyarrow (installed with pip if missing: the test
/// command must work on a fresh machine).
fn python_with_pyarrow() {
    crate::cli_common::python_with("pyarrow.parquet", "pyarrow");
}

/// Reads each file with pyarrow and checks the documented columns, types,
/// metadata and row order; prints `path rows` per file, or fails.
const PYARROW_CHECK: &str = r#"
import json, sys
import pyarrow as pa
import pyarrow.parquet as pq

# (name, type, nullable), as docs/recordings.md documents them.
expected = [
    ("topic", pa.string(), False), ("partition", pa.int32(), False),
    ("offset", pa.int64(), False), ("timestamp_ms", pa.int64(), False),
    ("timestamp_type", pa.string(), False), ("key", pa.binary(), True),
    ("value", pa.binary(), True), ("headers", None, False),
]
for path in sys.argv[1:]:
    table = pq.read_table(path)
    fields = list(table.schema)
    assert [f.name for f in fields] == [n for n, _, _ in expected], (path, table.schema)
    for (name, want, nullable), field in zip(expected, fields):
        assert field.nullable == nullable, (path, name, "nullable", field.nullable)
        if name == "headers":
            item = field.type.value_type if pa.types.is_list(field.type) else None
            assert item is not None and pa.types.is_struct(item), (path, field.type)
            parts = [(item.field(i).name, item.field(i).type) for i in range(item.num_fields)]
            assert parts == [("key", pa.string()), ("value", pa.binary())], (path, parts)
        else:
            assert field.type == want, (path, name, field.type, want)
    meta = pq.read_metadata(path)
    for group in range(meta.num_row_groups):
        assert meta.row_group(group).column(0).compression == "ZSTD", path
    kv = {k.decode(): v.decode() for k, v in meta.metadata.items()}
    assert kv["eddyline.recording.format_version"] == "1", (path, kv)
    count = int(kv["eddyline.recording.partition_count"])
    ranges = json.loads(kv["eddyline.recording.offset_ranges"])
    assert [r["partition"] for r in ranges] == list(range(count)), (path, ranges)
    topics = set(table.column("topic").to_pylist())
    assert topics <= {kv["eddyline.recording.topic"]}, (path, topics)
    rows = list(zip(table.column("partition").to_pylist(), table.column("offset").to_pylist()))
    assert rows == sorted(set(rows)), (path, "rows not sorted by partition, offset")
    for p, o in rows:
        assert ranges[p]["start"] <= o < ranges[p]["end"], (path, p, o)
    assert set(table.column("timestamp_type").to_pylist()) <= {"create_time", "log_append_time"}
    print(path, table.num_rows)
"#;

/// pyarrow reads every file with the documented columns, types, metadata
/// and row order (installed first if missing), or the test fails.
pub fn pyarrow_check(files: &[PathBuf]) {
    python_with_pyarrow();
    let output = Command::new("python3")
        .arg("-c")
        .arg(PYARROW_CHECK)
        .args(files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pyarrow refused a file: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.lines().count(), files.len(), "{stdout}");
}
