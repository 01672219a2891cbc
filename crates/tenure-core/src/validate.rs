//! Input validation: lengths and alphabets of every identifier.
//!
//! The reference accepted anything (docs/reference.md, bug 6: a null body
//! crashed it, a TTL sent as a string passed, nothing had a size limit).
//! Here every identifier has a length bound and an alphabet, checked before
//! the table looks at anything, and a refusal names the field and the rule.

use crate::error::Error;

/// Longest tenant id, in bytes.
pub const MAX_TENANT_LEN: usize = 64;
/// Longest lock key, in bytes.
pub const MAX_KEY_LEN: usize = 256;
/// Longest owner id (and admin actor), in bytes.
pub const MAX_OWNER_LEN: usize = 128;
/// Longest request id, in bytes.
pub const MAX_REQUEST_ID_LEN: usize = 128;
/// Longest force-release reason, in bytes.
pub const MAX_REASON_LEN: usize = 512;

fn check(
    field: &str,
    value: &str,
    max: usize,
    allowed: impl Fn(u8) -> bool,
    alphabet: &str,
) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::InvalidRequest(format!("{field} is required")));
    }
    if value.len() > max {
        return Err(Error::InvalidRequest(format!(
            "{field} is {} bytes, at most {max} allowed",
            value.len()
        )));
    }
    if let Some(pos) = value.bytes().position(|b| !allowed(b)) {
        return Err(Error::InvalidRequest(format!(
            "{field} has a character outside {alphabet} at byte {pos}"
        )));
    }
    Ok(())
}

fn tenant_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

fn owner_char(b: u8) -> bool {
    tenant_char(b) || matches!(b, b'@' | b':' | b'/')
}

fn graphic(b: u8) -> bool {
    b.is_ascii_graphic()
}

/// Tenant ids: 1..=64 bytes of `[A-Za-z0-9._-]`.
pub fn tenant(value: &str) -> Result<(), Error> {
    check(
        "tenant_id",
        value,
        MAX_TENANT_LEN,
        tenant_char,
        "[A-Za-z0-9._-]",
    )
}

/// Lock keys: 1..=256 bytes of printable ASCII without spaces; `/` and `:` are
/// ordinary characters (docs/reference.md, bug 2: separators inside keys
/// are harmless here).
pub fn key(value: &str) -> Result<(), Error> {
    check(
        "lock_key",
        value,
        MAX_KEY_LEN,
        graphic,
        "printable ASCII without spaces",
    )
}

/// Owner ids and admin actors: 1..=128 bytes of `[A-Za-z0-9._@:/-]`.
pub fn owner(value: &str) -> Result<(), Error> {
    check(
        "owner_id",
        value,
        MAX_OWNER_LEN,
        owner_char,
        "[A-Za-z0-9._@:/-]",
    )
}

/// Admin actors follow the owner alphabet.
pub fn actor(value: &str) -> Result<(), Error> {
    check(
        "actor",
        value,
        MAX_OWNER_LEN,
        owner_char,
        "[A-Za-z0-9._@:/-]",
    )
}

/// Request ids: 1..=128 bytes of printable ASCII without spaces.
pub fn request_id(value: &str) -> Result<(), Error> {
    check(
        "request_id",
        value,
        MAX_REQUEST_ID_LEN,
        graphic,
        "printable ASCII without spaces",
    )
}

/// Force-release reasons: 1..=512 bytes of text without control characters.
pub fn reason(value: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        return Err(Error::InvalidRequest("reason is required".into()));
    }
    if value.len() > MAX_REASON_LEN {
        return Err(Error::InvalidRequest(format!(
            "reason is {} bytes, at most {MAX_REASON_LEN} allowed",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::InvalidRequest(
            "reason has a control character".into(),
        ));
    }
    Ok(())
}

/// Key prefixes for listing: empty (everything) or a valid key's prefix.
pub fn prefix(value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Ok(());
    }
    check(
        "prefix",
        value,
        MAX_KEY_LEN,
        graphic,
        "printable ASCII without spaces",
    )
}
