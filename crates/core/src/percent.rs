//! Percent-encoding (RFC 3986), one way for the whole code base: SigV4's canonical request, the CLI's
//! request paths and the HTTP triggers' path parameters all read and write it here.

/// Encodes every byte but the unreserved characters (`A-Z a-z 0-9 - _ . ~`), and `/` when `keep_slash`, as
/// `%XX` with upper-case hex (what SigV4 signs).
pub fn encode(input: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes. What is not a whole escape (`%`, `%4`, `%zz`) stays as it is; `+` stays `+` (a
/// query string's `+` for space is the caller's to replace first).
pub fn decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// [`decode`], as text (invalid UTF-8 replaced).
pub fn decode_str(s: &str) -> String {
    String::from_utf8_lossy(&decode(s)).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_never_panics_and_keeps_what_is_not_an_escape() {
        assert_eq!(decode_str("a%20b%2Fc"), "a b/c");
        assert_eq!(decode_str("100%"), "100%");
        assert_eq!(decode_str("%zz%4"), "%zz%4");
        assert_eq!(decode_str("%é%"), "%é%");
        // An escape's digits are bytes, never a slice of the text: a multi-byte character after `%` is kept.
        assert_eq!(decode_str("%€"), "%€");
        assert_eq!(decode_str("%C3%A9"), "é");
        assert_eq!(decode_str("a+b"), "a+b");
        assert_eq!(decode("%ff"), vec![0xff]);
    }

    #[test]
    fn encoding_keeps_unreserved_characters_only() {
        assert_eq!(encode(b"a-b_c.d~e", false), "a-b_c.d~e");
        assert_eq!(encode(b"f:$LATEST", false), "f%3A%24LATEST");
        assert_eq!(encode(b"a b/c", false), "a%20b%2Fc");
        assert_eq!(encode(b"a b/c", true), "a%20b/c");
        assert_eq!(encode("é".as_bytes(), false), "%C3%A9");
    }

    #[test]
    fn what_is_encoded_decodes_to_itself() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&all, false)), all);
        assert_eq!(decode(&encode(&all, true)), all);
    }
}
