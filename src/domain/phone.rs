// TEMPORARY STUB until the real module lands.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber { e164: String, national: String }
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError { #[error("not ten digits")] NotTenDigits }
impl PhoneNumber {
    pub fn parse(input: &str) -> Result<PhoneNumber, PhoneError> {
        let d: String = input.chars().filter(|c| c.is_ascii_digit()).collect();
        let national = if let Some(rest) = d.strip_prefix("33") { if input.trim().starts_with('+') { format!("0{rest}") } else { d.clone() } } else { d.clone() };
        if national.len() != 10 || !national.starts_with('0') { return Err(PhoneError::NotTenDigits); }
        Ok(PhoneNumber { e164: format!("+33{}", &national[1..]), national })
    }
    pub fn e164(&self) -> &str { &self.e164 }
    pub fn national(&self) -> &str { &self.national }
    pub fn display(&self) -> String { self.national.as_bytes().chunks(2).map(|c| std::str::from_utf8(c).unwrap_or("")).collect::<Vec<_>>().join(" ") }
    pub fn tel_uri(&self) -> String { format!("tel:{}", self.e164) }
    pub fn warning(&self) -> Option<&'static str> { None }
}
