//! Property tests (bounded fuzzing on stable Rust) of the SigV4 verifier, which reads untrusted headers on
//! every Lambda API request: any header text is refused or accepted, never a panic; a request signed for
//! any path, query and body verifies; and changing any of them breaks the signature. `PROPTEST_CASES=N` runs
//! more cases.

use proptest::prelude::*;
use stoke_server::sigv4::{authorization, parse_authorization, verify, SignedRequest};

fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    ProptestConfig { cases: n, ..ProptestConfig::default() }
}

const DATE: &str = "20240101T000000Z";
/// `DATE` in seconds since the epoch.
const NOW: i64 = 1_704_067_200;
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// Text with the characters a signature's parts and a URL's escapes are made of, and some others.
fn wild() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9/=,;%+ _.~*-]{0,40}", "\\PC{0,24}", Just("%".to_string()), Just("%e9%".to_string()),]
}

fn authorization_text() -> impl Strategy<Value = String> {
    prop_oneof![
        wild(),
        (wild(), wild(), wild())
            .prop_map(|(c, s, g)| format!("AWS4-HMAC-SHA256 Credential={c}, SignedHeaders={s}, Signature={g}")),
        (wild(), wild()).prop_map(|(d, r)| format!(
            "AWS4-HMAC-SHA256 Credential=AKID/{d}/{r}/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"
        )),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-zA-Z0-9%:$._~ -]{1,6}", 1..4).prop_map(|parts| format!("/{}", parts.join("/")))
}

fn request<'a>(
    path: &'a str,
    query: Option<&'a str>,
    body: &'a [u8],
    headers: Vec<(&'a str, &'a str)>,
) -> SignedRequest<'a> {
    SignedRequest { method: "POST", raw_path: path, raw_query: query, headers, body }
}

proptest! {
    #![proptest_config(cases(2000))]

    /// Whatever the Authorization and X-Amz-Date headers say, the verifier answers, never panics.
    #[test]
    fn any_header_is_verified_or_refused(auth in authorization_text(), date in prop_oneof![wild(), "[0-9]{8}T[0-9]{6}Z"], path in wild(), query in proptest::option::of(wild())) {
        let _ = parse_authorization(&auth);
        let headers = vec![("host", "h"), ("x-amz-date", date.as_str()), ("authorization", auth.as_str())];
        let req = request(&path, query.as_deref(), b"", headers);
        let _ = verify(&req, NOW, |_| Some(SECRET.to_string()));
    }

    /// What a client signs verifies; another path, query or body, or another secret, does not.
    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it(
        path in path(),
        query in proptest::option::of("[a-z]{1,3}=[a-zA-Z0-9%+ ]{0,6}(&[a-z]{1,3}=[0-9]{0,3}){0,2}"),
        body in prop::collection::vec(any::<u8>(), 0..64),
        other_path in path(),
        other_body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let headers = vec![("host", "127.0.0.1:9000"), ("x-amz-date", DATE)];
        let signed = request(&path, query.as_deref(), &body, headers.clone());
        let auth = authorization(&signed, "AKID", SECRET, "us-east-1", "lambda", DATE, &["host", "x-amz-date"]);
        let with = |p: &str, b: &[u8]| {
            let mut h = headers.clone();
            h.push(("authorization", auth.as_str()));
            verify(&request(p, query.as_deref(), b, h), NOW, |k| (k == "AKID").then(|| SECRET.to_string()))
        };
        prop_assert_eq!(with(&path, &body).ok(), Some("AKID".to_string()));
        if stoke_core::percent::decode(&other_path) != stoke_core::percent::decode(&path) {
            prop_assert!(with(&other_path, &body).is_err(), "{path} signed, {other_path} accepted");
        }
        if other_body != body {
            prop_assert!(with(&path, &other_body).is_err());
        }
        let mut h = headers.clone();
        h.push(("authorization", auth.as_str()));
        let wrong_secret = verify(&request(&path, query.as_deref(), &body, h), NOW, |_| Some("another".into()));
        prop_assert!(wrong_secret.is_err());
    }
}
