//! Comma-separated tables read by column name, for the public operator formats whose headers
//! carry many columns in an order that varies between files (Vidur's `mlp.csv`,
//! aiconfigurator's `*_perf.txt`). Unquoted fields only, as both formats write them.

use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TableError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: empty (no header)")]
    Empty { path: PathBuf },
    #[error("{path}: no column `{column}` (columns: {found})")]
    MissingColumn {
        path: PathBuf,
        column: String,
        found: String,
    },
    #[error("{path}:{line}: {found} fields, the header has {expected}")]
    Columns {
        path: PathBuf,
        line: usize,
        expected: usize,
        found: usize,
    },
    #[error("{path}:{line}: column `{column}`: `{value}` is not a number")]
    NotANumber {
        path: PathBuf,
        line: usize,
        column: String,
        value: String,
    },
}

/// A table: its header and its rows (1-based line numbers kept for errors).
#[derive(Debug)]
pub struct NamedCsv {
    pub path: PathBuf,
    header: Vec<String>,
    rows: Vec<(usize, Vec<String>)>,
}

impl NamedCsv {
    pub fn read(path: &Path) -> Result<NamedCsv, TableError> {
        let text = std::fs::read_to_string(path).map_err(|source| TableError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        NamedCsv::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<NamedCsv, TableError> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
            .filter(|(_, l)| !l.trim().is_empty());
        let header: Vec<String> = match lines.next() {
            Some((_, h)) => h.split(',').map(|s| s.trim().to_string()).collect(),
            None => {
                return Err(TableError::Empty {
                    path: path.to_path_buf(),
                })
            }
        };
        let mut rows = Vec::new();
        for (line, l) in lines {
            let fields: Vec<String> = l.split(',').map(|s| s.trim().to_string()).collect();
            if fields.len() != header.len() {
                return Err(TableError::Columns {
                    path: path.to_path_buf(),
                    line,
                    expected: header.len(),
                    found: fields.len(),
                });
            }
            rows.push((line, fields));
        }
        Ok(NamedCsv {
            path: path.to_path_buf(),
            header,
            rows,
        })
    }

    /// The index of `column`, or an error naming the columns there are.
    pub fn column(&self, column: &str) -> Result<usize, TableError> {
        self.header
            .iter()
            .position(|h| h == column)
            .ok_or_else(|| TableError::MissingColumn {
                path: self.path.clone(),
                column: column.into(),
                found: self.header.join(", "),
            })
    }

    pub fn has_column(&self, column: &str) -> bool {
        self.header.iter().any(|h| h == column)
    }

    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(move |(line, fields)| Row {
            table: self,
            line: *line,
            fields,
        })
    }
}

/// One row, its fields read by column index.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    table: &'a NamedCsv,
    pub line: usize,
    fields: &'a [String],
}

impl Row<'_> {
    pub fn text(&self, col: usize) -> &str {
        &self.fields[col]
    }

    /// The field as a number; an empty field (pandas' NaN) is `None`.
    pub fn number(&self, col: usize) -> Result<Option<f64>, TableError> {
        let v = self.fields[col].as_str();
        if v.is_empty() || v.eq_ignore_ascii_case("nan") {
            return Ok(None);
        }
        v.parse::<f64>()
            .map(Some)
            .map_err(|_| TableError::NotANumber {
                path: self.table.path.clone(),
                line: self.line,
                column: self.table.header[col].clone(),
                value: v.into(),
            })
    }

    /// A required number: empty fields are an error too.
    pub fn required(&self, col: usize) -> Result<f64, TableError> {
        self.number(col)?.ok_or_else(|| TableError::NotANumber {
            path: self.table.path.clone(),
            line: self.line,
            column: self.table.header[col].clone(),
            value: String::new(),
        })
    }

    /// A boolean as pandas writes it (`True`/`False`) or `1`/`0`.
    pub fn flag(&self, col: usize) -> bool {
        matches!(
            self.fields[col].to_ascii_lowercase().as_str(),
            "true" | "1" | "1.0"
        )
    }
}
