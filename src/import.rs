//! Parsing a CSV import (`POST /v1/numbers/import`, `relai import`): every line checked,
//! every bad line and field reported, before anything is written.

use chrono::{DateTime, Utc};

use crate::domain::{PhoneNumber, ServiceCode, Territory};
use crate::error::{ApiError, FieldError};
use crate::store::{NewNumber, NewProvenance};

/// The header an import file must start with.
pub const HEADER: &str = "service,territory_kind,territory_code,phone,label,valid_until";
/// The most rows one import may hold.
pub const MAX_ROWS: usize = 50_000;
/// The most bad lines reported in one answer.
pub const MAX_REPORTED: usize = 1_000;

/// One valid row, with its line in the file (the header is line 1).
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub line: u64,
    pub service: ServiceCode,
    pub territory: Territory,
    pub phone: PhoneNumber,
    pub label: String,
    pub valid_until: Option<DateTime<Utc>>,
}

impl ImportRow {
    pub fn into_new_number(self, organization_id: &str, by_account: Option<String>) -> NewNumber {
        NewNumber {
            service: self.service,
            territory: self.territory,
            phone: self.phone,
            label: self.label,
            provenance: NewProvenance::Official {
                organization_id: organization_id.to_owned(),
            },
            outage_id: None,
            valid_from: None,
            valid_until: self.valid_until,
            demo: false,
            by_account,
        }
    }
}

/// Why a file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the file is not UTF-8 text")]
    NotUtf8,
    #[error("the first line must be exactly: {HEADER}")]
    Header,
    #[error("the file has no rows")]
    Empty,
    #[error("at most {MAX_ROWS} rows per import")]
    TooManyRows,
    #[error("{} bad line(s); nothing was imported", .0.len())]
    Lines(Vec<FieldError>),
}

impl ImportError {
    pub fn into_api(self) -> ApiError {
        let detail = self.to_string();
        let errors = match self {
            ImportError::Lines(errors) => errors,
            ImportError::Header => {
                let mut e = FieldError::new("header", format!("expected {HEADER}"));
                e.line = Some(1);
                vec![e]
            }
            ImportError::NotUtf8 => vec![FieldError::new("file", "encode the file as UTF-8")],
            ImportError::Empty => vec![FieldError::new(
                "file",
                "add at least one row after the header",
            )],
            ImportError::TooManyRows => vec![FieldError::new(
                "file",
                format!("split the file: at most {MAX_ROWS} rows"),
            )],
        };
        ApiError::Unprocessable { detail, errors }
    }
}

fn at(line: u64, field: &str, message: impl Into<String>) -> FieldError {
    let mut e = FieldError::new(field, message);
    e.line = Some(line);
    e
}

/// Parses and checks a whole file.
pub fn parse(bytes: &[u8]) -> Result<Vec<ImportRow>, ImportError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ImportError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = reader.headers().map_err(|_| ImportError::Header)?.clone();
    let names: Vec<&str> = header.iter().map(str::trim).collect();
    if names.join(",") != HEADER {
        return Err(ImportError::Header);
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (index, record) in reader.records().enumerate() {
        if index >= MAX_ROWS {
            return Err(ImportError::TooManyRows);
        }
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(index as u64 + 2);
                errors.push(at(line, "row", format!("unreadable: {e}")));
                continue;
            }
        };
        let line = record
            .position()
            .map(|p| p.line())
            .unwrap_or(index as u64 + 2);
        if record.len() != 6 {
            errors.push(at(
                line,
                "row",
                format!("expected 6 fields, found {}", record.len()),
            ));
            continue;
        }
        let field = |i: usize| record.get(i).unwrap_or("").trim();
        let before = errors.len();
        let service = ServiceCode::parse(field(0))
            .map_err(|e| errors.push(at(line, "service", e.to_string())))
            .ok();
        let territory = crate::domain::Territory::parse(field(1), field(2))
            .map_err(|e| errors.push(at(line, "territory", e.to_string())))
            .ok();
        let phone = PhoneNumber::parse(field(3))
            .map_err(|e| errors.push(at(line, "phone", e.to_string())))
            .ok();
        let label = field(4).to_owned();
        if label.is_empty() {
            errors.push(at(line, "label", "must not be empty"));
        }
        let valid_until = match field(5) {
            "" => None,
            s => DateTime::parse_from_rfc3339(s)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|_| {
                    errors.push(at(
                        line,
                        "valid_until",
                        "an RFC 3339 time, e.g. 2026-06-03T06:00:00Z, or empty",
                    ))
                })
                .ok(),
        };
        if errors.len() == before {
            if let (Some(service), Some(territory), Some(phone)) = (service, territory, phone) {
                rows.push(ImportRow {
                    line,
                    service,
                    territory,
                    phone,
                    label,
                    valid_until,
                });
            }
        }
    }
    if !errors.is_empty() {
        errors.truncate(MAX_REPORTED);
        return Err(ImportError::Lines(errors));
    }
    if rows.is_empty() {
        return Err(ImportError::Empty);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_file_parses_with_lines() {
        let file = format!("{HEADER}\n18,departement,33,05 56 12 34 56,CTA-CODIS 33,\n15,commune,33063,0556000015,SAMU Bordeaux,2026-12-01T00:00:00Z\n");
        let rows = parse(file.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[1].line, 3);
        assert_eq!(rows[1].phone.e164(), "+33556000015");
        assert!(rows[1].valid_until.is_some());
        // A BOM and CRLF line ends are fine.
        let file = format!("\u{feff}{HEADER}\r\n18,departement,33,05 56 12 34 56,CTA,\r\n");
        assert_eq!(parse(file.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn every_bad_line_and_field_is_named() {
        let file = format!("{HEADER}\n18,departement,33,0899123456,x,\nabc,region,33,05 56 12 34 56,,tomorrow\n18,departement,33\n");
        let Err(ImportError::Lines(errors)) = parse(file.as_bytes()) else {
            panic!("expected line errors")
        };
        let got: Vec<(u64, &str)> = errors
            .iter()
            .map(|e| (e.line.unwrap(), e.field.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (2, "phone"),
                (3, "service"),
                (3, "territory"),
                (3, "label"),
                (3, "valid_until"),
                (4, "row")
            ]
        );
    }

    #[test]
    fn header_encoding_and_emptiness() {
        assert!(matches!(
            parse(b"service,territory,phone\n18,x,y\n"),
            Err(ImportError::Header)
        ));
        assert!(matches!(parse(b""), Err(ImportError::Header)));
        assert!(matches!(
            parse(format!("{HEADER}\n").as_bytes()),
            Err(ImportError::Empty)
        ));
        let latin1 = b"service,territory_kind,territory_code,phone,label,valid_until\n18,departement,33,0556123456,Pr\xe9fecture,\n";
        assert!(matches!(parse(latin1), Err(ImportError::NotUtf8)));
    }
}
