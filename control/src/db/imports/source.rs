//! Reading an import file into lines of named cells, the same way for CSV
//! and JSON, so every import checks one shape.

use std::collections::HashMap;

use serde_json::Value;

use super::{Format, Problem};

/// One line of the file (CSV) or one object of the array (JSON), its cells
/// trimmed; an empty cell is absent.
#[derive(Debug, Default)]
pub struct Record {
    /// CSV: as the file counts lines, the header being line 1. JSON: the
    /// object's position in the array, from 1.
    pub line: u64,
    cells: HashMap<String, String>,
}

impl Record {
    pub fn get(&self, column: &str) -> Option<&str> {
        self.cells.get(column).map(String::as_str)
    }
}

/// Every record of the file, and how many lines (objects) it has. A column (or JSON field) not in `columns` and
/// a `required` column missing from the header are problems of line 1; a
/// record with a required cell empty is a problem of its line, and is left
/// out.
pub fn read(
    format: Format,
    text: &str,
    columns: &[&str],
    required: &[&str],
    problems: &mut Vec<Problem>,
) -> (Vec<Record>, u64) {
    let records = match format {
        Format::Csv => read_csv(text, columns, required, problems),
        Format::Json => read_json(text, columns, problems),
    };
    let lines = records.len() as u64;
    let complete = records
        .into_iter()
        .filter(|record| {
            let missing: Vec<&&str> = required
                .iter()
                .filter(|c| record.get(c).is_none())
                .collect();
            for column in &missing {
                problems.push(Problem::new(record.line, Some(column), "is required"));
            }
            missing.is_empty()
        })
        .collect();
    (complete, lines)
}

fn read_csv(
    text: &str,
    columns: &[&str],
    required: &[&str],
    problems: &mut Vec<Problem>,
) -> Vec<Record> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(header) => header.iter().map(|c| c.trim().to_lowercase()).collect(),
        Err(error) => {
            problems.push(Problem::new(1, None, format!("the header: {error}")));
            return Vec::new();
        }
    };
    let mut known = true;
    for column in &header {
        if !columns.contains(&column.as_str()) {
            known = false;
            problems.push(Problem::new(
                1,
                Some(column),
                format!("is not a column of this import ({})", columns.join(", ")),
            ));
        }
    }
    for column in required {
        if !header.iter().any(|c| c == column) {
            known = false;
            problems.push(Problem::new(1, Some(column), "the header must name it"));
        }
    }
    if !known {
        return Vec::new();
    }
    let mut records = Vec::new();
    // Lines as an editor counts them, from each record's byte offset: the
    // csv crate's own count skips blank lines and runs one short after a
    // CRLF (which browsers send a textarea's lines with).
    let mut lines = LineCounter::new(text);
    for row in reader.records() {
        let row = match row {
            Ok(row) => row,
            Err(error) => {
                let line = error.position().map_or(0, |p| lines.at(p.byte()));
                problems.push(Problem::new(line, None, error.to_string()));
                continue;
            }
        };
        let line = row.position().map_or(0, |p| lines.at(p.byte()));
        if row.len() != header.len() {
            problems.push(Problem::new(
                line,
                None,
                format!("has {} cells, the header {}", row.len(), header.len()),
            ));
            continue;
        }
        if row.iter().all(|cell| cell.trim().is_empty()) {
            continue;
        }
        let cells = header
            .iter()
            .zip(row.iter())
            .filter(|(_, cell)| !cell.trim().is_empty())
            .map(|(column, cell)| (column.clone(), cell.trim().to_owned()))
            .collect();
        records.push(Record { line, cells });
    }
    records
}

/// A JSON value as one cell of a CSV line, the rule exports write by and
/// imports read JSON by: text as it is, `null` empty, a list of strings
/// joined by `;`, numbers and booleans as written, other nested values as
/// JSON text.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(";"),
        other => other.to_string(),
    }
}

/// The line of a byte offset, for offsets that only grow.
struct LineCounter<'a> {
    text: &'a [u8],
    counted_to: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text: text.as_bytes(),
            counted_to: 0,
            line: 1,
        }
    }

    /// The line of the record the csv crate places at `byte`, which may be
    /// the end of the previous record's terminator (after its CR, or before
    /// blank lines): the record starts past any line ends there.
    fn at(&mut self, byte: u64) -> u64 {
        let mut byte = (byte as usize).min(self.text.len());
        while self
            .text
            .get(byte)
            .is_some_and(|b| matches!(b, b'\r' | b'\n'))
        {
            byte += 1;
        }
        if byte > self.counted_to {
            let newlines = self.text[self.counted_to..byte]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.line += newlines as u64;
            self.counted_to = byte;
        }
        self.line
    }
}

/// An array of objects; each value becomes a [`cell`], as an export writes
/// it (so an export's JSON imports like its CSV).
fn read_json(text: &str, columns: &[&str], problems: &mut Vec<Problem>) -> Vec<Record> {
    let items: Vec<serde_json::Map<String, Value>> = match serde_json::from_str(text) {
        Ok(items) => items,
        Err(error) => {
            problems.push(Problem::new(
                0,
                None,
                format!("the file must be a JSON array of objects: {error}"),
            ));
            return Vec::new();
        }
    };
    let mut records = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let line = index as u64 + 1;
        let mut cells = HashMap::new();
        for (field, value) in item {
            if !columns.contains(&field.as_str()) {
                problems.push(Problem::new(
                    line,
                    Some(&field),
                    format!("is not a field of this import ({})", columns.join(", ")),
                ));
                continue;
            }
            let cell = cell(&value);
            let cell = cell.trim();
            if !cell.is_empty() {
                cells.insert(field, cell.to_owned());
            }
        }
        records.push(Record { line, cells });
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: &[&str] = &["external_id", "name", "tags"];

    #[test]
    fn csv_and_json_read_alike() {
        let mut problems = Vec::new();
        let csv = "\u{feff}External_ID,name,tags\n c-1 , Ada ,a;b\n,,\nc-2,Bob,\n";
        let (from_csv, lines) = read(Format::Csv, csv, COLUMNS, &["name"], &mut problems);
        assert_eq!(lines, 2, "blank lines are not lines");
        let json = r#"[{"external_id":"c-1","name":" Ada ","tags":["a","b"]},{"external_id":"c-2","name":"Bob","tags":null}]"#;
        let (from_json, _) = read(Format::Json, json, COLUMNS, &["name"], &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        for records in [&from_csv, &from_json] {
            assert_eq!(records.len(), 2);
            assert_eq!(records[0].get("external_id"), Some("c-1"));
            assert_eq!(records[0].get("name"), Some("Ada"));
            assert_eq!(records[0].get("tags"), Some("a;b"));
            assert_eq!(records[1].get("tags"), None);
        }
        assert_eq!(
            (from_csv[0].line, from_csv[1].line),
            (2, 4),
            "the blank line counts"
        );
        assert_eq!((from_json[0].line, from_json[1].line), (1, 2));
    }

    #[test]
    fn crlf_lines_are_numbered_as_lf_ones() {
        let mut problems = Vec::new();
        let (records, _) = read(
            Format::Csv,
            "name\r\nAda\r\n\r\nBob\r\n",
            COLUMNS,
            &[],
            &mut problems,
        );
        let lines: Vec<u64> = records.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 4]);
    }

    #[test]
    fn unknown_and_missing_columns_are_problems_of_the_header() {
        let mut problems = Vec::new();
        let (records, _) = read(
            Format::Csv,
            "nick,tags\nx,y\n",
            COLUMNS,
            &["name"],
            &mut problems,
        );
        assert!(records.is_empty());
        let fields: Vec<_> = problems.iter().map(|p| (p.line, p.field.clone())).collect();
        assert_eq!(
            fields,
            [(1, Some("nick".to_owned())), (1, Some("name".to_owned()))]
        );
    }

    #[test]
    fn an_empty_required_cell_is_a_problem_of_its_line() {
        let mut problems = Vec::new();
        let (records, lines) = read(
            Format::Csv,
            "name,tags\n,y\nAda,\n",
            COLUMNS,
            &["name"],
            &mut problems,
        );
        assert_eq!(lines, 2);
        assert_eq!(records.len(), 1);
        assert_eq!(problems, [Problem::new(2, Some("name"), "is required")]);
    }
}
