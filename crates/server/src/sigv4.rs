//! AWS Signature Version 4 verification: the server recomputes the signature a client made with its secret
//! key and compares. Pure: the caller supplies the request parts, the secret lookup and the time.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use stoke_core::hex::encode as hex;
use stoke_core::percent;

type HmacSha256 = Hmac<Sha256>;

/// The parts of a request that SigV4 signs.
#[derive(Debug)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path exactly as it arrived on the wire (still percent-encoded).
    pub raw_path: &'a str,
    pub raw_query: Option<&'a str>,
    /// Header names in any case.
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
}

/// Why a signature was refused; each message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("the request is not signed: send an AWS Signature Version 4 Authorization header (configure credentials from credentials.json)")]
    Missing,
    #[error("the Authorization header is not a valid AWS4-HMAC-SHA256 signature: {0}")]
    Malformed(String),
    #[error("the access key id {0} is not known to this server")]
    UnknownKey(String),
    #[error("the request signature does not match; check the secret access key")]
    Mismatch,
    #[error("the request time {0} is more than 15 minutes away from the server's clock")]
    Skewed(String),
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access_key_id: &'a str,
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

pub fn parse_authorization(value: &str) -> Result<Authorization<'_>, SigError> {
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256")
        .ok_or_else(|| SigError::Malformed("it must start with AWS4-HMAC-SHA256".into()))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or_else(|| SigError::Malformed(format!("bad part {part:?}")))?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let credential = credential.ok_or_else(|| SigError::Malformed("no Credential".into()))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(SigError::Malformed(format!("bad credential scope {credential:?}")));
    };
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed.ok_or_else(|| SigError::Malformed("no SignedHeaders".into()))?.split(';').collect(),
        signature: signature.ok_or_else(|| SigError::Malformed("no Signature".into()))?,
    })
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// A secret derived from `key` for `context` (hex of HMAC-SHA256): it reveals nothing of `key`, and changes
/// with it.
pub fn derive_secret(key: &[u8], context: &str) -> String {
    hex(&hmac(key, context.as_bytes()))
}

/// A query string's name or value as it was meant: `+` is a space, then `%XX` escapes.
fn query_decode(s: &str) -> Vec<u8> {
    percent::decode(&s.replace('+', " "))
}

fn canonical_query(raw: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = raw
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent::encode(&query_decode(k), false), percent::encode(&query_decode(v), false))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// The hex signature of `req` under `auth`'s scope with `secret`, as the client should have computed it.
/// `amz_date` is the request's `X-Amz-Date`.
pub fn signature(req: &SignedRequest<'_>, auth: &Authorization<'_>, amz_date: &str, secret: &str) -> String {
    let canonical_headers: String = auth
        .signed_headers
        .iter()
        .map(|name| {
            let values: Vec<String> = req
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            format!("{name}:{}\n", values.join(","))
        })
        .collect();
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        percent::encode(req.raw_path.as_bytes(), true),
        canonical_query(req.raw_query),
        canonical_headers,
        auth.signed_headers.join(";"),
        hex(&Sha256::digest(req.body)),
    );
    let scope = format!("{}/{}/{}/aws4_request", auth.date, auth.region, auth.service);
    let string_to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex(&Sha256::digest(canonical_request.as_bytes())));
    let key = hmac(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
    let key = hmac(&key, auth.region.as_bytes());
    let key = hmac(&key, auth.service.as_bytes());
    let key = hmac(&key, b"aws4_request");
    hex(&hmac(&key, string_to_sign.as_bytes()))
}

/// The `Authorization` header value for `req` (whose headers must include `x-amz-date` = `amz_date` and every
/// header in `signed_headers`), as an AWS client would send it.
pub fn authorization(
    req: &SignedRequest<'_>,
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
    amz_date: &str,
    signed_headers: &[&str],
) -> String {
    let auth = Authorization {
        access_key_id,
        date: amz_date.get(..8).unwrap_or(amz_date),
        region,
        service,
        signed_headers: signed_headers.to_vec(),
        signature: "",
    };
    let sig = signature(req, &auth, amz_date, secret);
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key_id}/{}/{region}/{service}/aws4_request, SignedHeaders={}, Signature={sig}",
        auth.date,
        signed_headers.join(";")
    )
}

/// Seconds since the epoch of an `X-Amz-Date` (`20150830T123600Z`).
fn parse_amz_date(s: &str) -> Option<i64> {
    if s.len() != 16 || !s.ends_with('Z') || s.as_bytes()[8] != b'T' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (n(0..4)?, n(4..6)?, n(6..8)?, n(9..11)?, n(11..13)?, n(13..15)?);
    let days = stoke_core::time::days_from_civil(y, u32::try_from(mo).ok()?, u32::try_from(d).ok()?);
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

/// Verifies a request: returns the access key id it was signed with. `secret_of` looks up a key's secret.
pub fn verify(
    req: &SignedRequest<'_>,
    now_unix: i64,
    secret_of: impl Fn(&str) -> Option<String>,
) -> Result<String, SigError> {
    let header = |name: &str| req.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v);
    let auth = parse_authorization(header("authorization").ok_or(SigError::Missing)?)?;
    let amz_date = header("x-amz-date").ok_or_else(|| SigError::Malformed("no X-Amz-Date header".into()))?;
    let when = parse_amz_date(amz_date).ok_or_else(|| SigError::Malformed(format!("bad X-Amz-Date {amz_date:?}")))?;
    if (when - now_unix).abs() > 15 * 60 {
        return Err(SigError::Skewed(amz_date.to_string()));
    }
    let secret = secret_of(auth.access_key_id).ok_or_else(|| SigError::UnknownKey(auth.access_key_id.to_string()))?;
    let expected = signature(req, &auth, amz_date, &secret);
    let matches = expected.len() == auth.signature.len()
        && expected.bytes().zip(auth.signature.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !matches {
        return Err(SigError::Mismatch);
    }
    Ok(auth.access_key_id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    /// The `get-vanilla` case of AWS's published SigV4 test suite.
    #[test]
    fn matches_the_aws_test_suite_get_vanilla() {
        let auth_value = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                          SignedHeaders=host;x-amz-date, \
                          Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        let req = SignedRequest {
            method: "GET",
            raw_path: "/",
            raw_query: None,
            headers: vec![
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", "20150830T123600Z"),
                ("Authorization", auth_value),
            ],
            body: b"",
        };
        let now = parse_amz_date("20150830T123600Z").unwrap();
        let key = verify(&req, now, |k| (k == "AKIDEXAMPLE").then(|| SECRET.to_string())).unwrap();
        assert_eq!(key, "AKIDEXAMPLE");
    }

    fn signed(
        path: &str,
        query: Option<&'static str>,
        body: &'static [u8],
        secret: &str,
    ) -> (String, Vec<(String, String)>) {
        let headers = vec![
            ("host".to_string(), "127.0.0.1:9000".to_string()),
            ("x-amz-date".to_string(), "20240101T000000Z".to_string()),
        ];
        let req = SignedRequest {
            method: "POST",
            raw_path: path,
            raw_query: query,
            headers: headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            body,
        };
        let value =
            authorization(&req, "AKID", secret, "us-east-1", "lambda", "20240101T000000Z", &["host", "x-amz-date"]);
        (value, headers)
    }

    fn check(
        path: &str,
        query: Option<&'static str>,
        body: &'static [u8],
        auth: &str,
        headers: &[(String, String)],
        now: i64,
    ) -> Result<String, SigError> {
        let mut h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        h.push(("Authorization", auth));
        let req = SignedRequest { method: "POST", raw_path: path, raw_query: query, headers: h, body };
        verify(&req, now, |k| (k == "AKID").then(|| "s3cret".to_string()))
    }

    #[test]
    fn round_trip_and_every_kind_of_refusal() {
        let now = parse_amz_date("20240101T000000Z").unwrap();
        let path = "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Af/invocations";
        let (auth, headers) = signed(path, Some("Qualifier=prod"), b"{}", "s3cret");
        assert_eq!(check(path, Some("Qualifier=prod"), b"{}", &auth, &headers, now).unwrap(), "AKID");
        assert_eq!(check(path, Some("Qualifier=prod"), b"{\"x\":1}", &auth, &headers, now), Err(SigError::Mismatch));
        assert_eq!(check(path, Some("Qualifier=beta"), b"{}", &auth, &headers, now), Err(SigError::Mismatch));
        let (wrong, _) = signed(path, Some("Qualifier=prod"), b"{}", "other");
        assert_eq!(check(path, Some("Qualifier=prod"), b"{}", &wrong, &headers, now), Err(SigError::Mismatch));
        assert!(matches!(check(path, None, b"{}", &auth, &headers, now + 3600), Err(SigError::Skewed(_))));
        let unknown = auth.replace("Credential=AKID/", "Credential=NOPE/");
        assert_eq!(
            check(path, Some("Qualifier=prod"), b"{}", &unknown, &headers, now),
            Err(SigError::UnknownKey("NOPE".into()))
        );
        assert!(matches!(check(path, None, b"", "Bearer x", &headers, now), Err(SigError::Malformed(_))));
    }

    #[test]
    fn canonical_query_sorts_and_encodes() {
        assert_eq!(canonical_query(Some("b=2&a=1&a=0")), "a=0&a=1&b=2");
        assert_eq!(canonical_query(Some("Marker=a%3Ab&MaxItems=5")), "Marker=a%3Ab&MaxItems=5");
        assert_eq!(canonical_query(None), "");
        // A `%` before a multi-byte character used to be sliced as text and panicked the request.
        assert_eq!(canonical_query(Some("a=%€&b=x+y")), "a=%25%E2%82%AC&b=x%20y");
    }

    #[test]
    fn amz_dates() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20240229T123456Z"), Some(1_709_210_096));
        assert_eq!(parse_amz_date("2024-02-29"), None);
    }
}
