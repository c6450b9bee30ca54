//! What JSON itself says about request bodies, for every API that reads one.

/// A body with nothing but JSON's whitespace (RFC 8259: space, tab, line feed, carriage return): an empty
/// body, which an operation with optional input reads as `{}`. Anything else, a form feed included, is
/// parsed as JSON and refused if it is not.
pub fn is_blank(body: &[u8]) -> bool {
    body.iter().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_jsons_own_whitespace_is_blank() {
        for blank in [&b""[..], b" ", b"\r\n\t  "] {
            assert!(is_blank(blank), "{blank:?}");
        }
        // Rust's ASCII whitespace has the form feed; JSON's does not (serde_json refuses it).
        for not_blank in [&b"\x0c"[..], b" \x0b", b"{}", b"\xa0"] {
            assert!(!is_blank(not_blank), "{not_blank:?}");
        }
        assert!(serde_json::from_slice::<serde_json::Value>(b"\x0c{}").is_err());
    }
}
