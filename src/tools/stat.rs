//! `mqfs-stat`: every stream's numbers, as the `user.mq.*` extended attributes of mqfs give
//! them (readers, backlog, in flight, redelivered, dead, messages, bytes), a table row per
//! stream and one per group (the sums over its own streams), groups in depth-first order.

use std::io;
use std::path::{Path, PathBuf};

use super::sys;

/// The numbers shown, by their attribute names (`user.mq.NAME`), in the table's order.
pub const NUMBERS: [&str; 7] = ["readers", "backlog", "inflight", "redelivered", "dead", "messages", "bytes"];

/// One line of the table.
#[derive(Debug, PartialEq, Eq)]
pub struct Row {
    /// The stream's path, or the group's with a `/` after it.
    pub path: String,
    /// Each of `NUMBERS`: None where the attribute is missing (an older mqfs).
    pub numbers: [Option<u64>; 7],
}

/// A problem met on the way: a path and what was wrong with it.
pub type Problem = (PathBuf, io::Error);

/// The rows of the group or stream at `path` (every group below a group), and the problems
/// met on the way (a path that is neither is one).
pub fn rows(path: &Path) -> (Vec<Row>, Vec<Problem>) {
    let (mut rows, mut problems) = (Vec::new(), Vec::new());
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() && path.join("ctl").is_file() && path.join("order").is_file() => {
            walk(path, &mut rows, &mut problems)
        }
        Ok(meta) if meta.is_file() => match stream(path) {
            Ok(row) => rows.push(row),
            Err(e) => problems.push((path.to_path_buf(), e)),
        },
        Ok(_) => problems.push((path.to_path_buf(), io::Error::other("not an mqfs group or stream"))),
        Err(e) => problems.push((path.to_path_buf(), e)),
    }
    (rows, problems)
}

/// The group at `group`'s row, its streams' rows, then its subgroups', each sorted by name.
fn walk(group: &Path, rows: &mut Vec<Row>, problems: &mut Vec<Problem>) {
    let mut entries = match std::fs::read_dir(group) {
        Ok(entries) => entries.filter_map(Result::ok).collect::<Vec<_>>(),
        Err(e) => return problems.push((group.to_path_buf(), e)),
    };
    entries.sort_by_key(|entry| entry.file_name());
    let at = rows.len();
    rows.push(Row {
        path: format!("{}/", group.display().to_string().trim_end_matches('/')),
        numbers: [Some(0); 7],
    });
    let mut subgroups = Vec::new();
    for entry in entries {
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            subgroups.push(entry.path());
        } else if kind.is_file() && !matches!(entry.file_name().to_str(), Some("ctl" | "order")) {
            match stream(&entry.path()) {
                Ok(row) => {
                    let total = &mut rows[at].numbers;
                    for (sum, n) in total.iter_mut().zip(row.numbers) {
                        *sum = sum.zip(n).map(|(a, b)| a + b);
                    }
                    rows.push(row);
                }
                // Removed while listed.
                Err(e) if sys::is(&e, libc::ENOENT) => {}
                Err(e) => problems.push((entry.path(), e)),
            }
        }
    }
    for subgroup in subgroups {
        walk(&subgroup, rows, problems);
    }
}

/// One stream's row. A stream has every number but those an older mqfs lacks; a file
/// without `user.mq.readers` is no stream (ENODATA).
fn stream(path: &Path) -> io::Result<Row> {
    let mut numbers = [None; 7];
    for (slot, name) in numbers.iter_mut().zip(NUMBERS) {
        *slot = match sys::getxattr(path, &format!("user.mq.{name}")) {
            Ok(value) => std::str::from_utf8(&value).ok().and_then(|v| v.parse().ok()),
            Err(e) if sys::is(&e, libc::ENODATA) && name != "readers" => None,
            Err(e) if sys::is(&e, libc::ENODATA) => return Err(io::Error::other("not an mqfs stream")),
            Err(e) if sys::is(&e, libc::EOPNOTSUPP) => {
                return Err(io::Error::other(
                    "no user.mq.* attributes: not an mqfs stream, or an mqfs too old to give them",
                ));
            }
            Err(e) => return Err(e),
        };
    }
    Ok(Row { path: path.display().to_string(), numbers })
}

/// The rows as a table: a header, then a line each, numbers right-aligned under their names.
pub fn table(rows: &[Row]) -> String {
    let width = rows.iter().map(|r| r.path.chars().count()).max().unwrap_or(0).max("STREAM".len());
    let mut out = format!("{:width$}", "STREAM");
    for name in NUMBERS {
        out.push_str(&format!(" {}", name.to_uppercase()));
    }
    out.push('\n');
    for row in rows {
        out.push_str(&format!("{:width$}", row.path));
        for (name, n) in NUMBERS.iter().zip(row.numbers) {
            let n = n.map_or_else(|| "-".to_string(), |n| n.to_string());
            out.push_str(&format!(" {n:>w$}", w = name.len()));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_numbers_under_their_names() {
        let rows = [
            Row {
                path: "/n/mq/svc/".into(),
                numbers: [Some(2), Some(10), Some(1), Some(0), Some(0), Some(11), Some(99)],
            },
            Row {
                path: "/n/mq/svc/time".into(),
                numbers: [Some(2), Some(10), Some(1), Some(0), None, Some(11), Some(99)],
            },
        ];
        let table = table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "STREAM         READERS BACKLOG INFLIGHT REDELIVERED DEAD MESSAGES BYTES");
        assert_eq!(lines[1], "/n/mq/svc/           2      10        1           0    0       11    99");
        assert_eq!(lines[2], "/n/mq/svc/time       2      10        1           0    -       11    99");
    }
}
