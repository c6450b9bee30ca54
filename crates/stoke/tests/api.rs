//! The native API against a real server: functions, code, versions, aliases, lifecycle, tenancy.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

#[test]
fn first_start_writes_private_credentials_and_healthz_answers() {
    let s = TestServer::start();
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(s.dir.join("credentials.json")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.dir.join("credentials.json")).unwrap()).unwrap();
    for key in ["account_id", "api_key", "access_key_id", "secret_access_key"] {
        assert!(creds[key].as_str().is_some_and(|v| !v.is_empty()), "{key}");
    }
    let (status, me) = s.get("/v1/account");
    assert_eq!(status, 200);
    assert_eq!(me["is_admin"], true);
    assert_eq!(me["id"], creds["account_id"]);
    let (status, doc) = s.get("/v1/openapi.json");
    assert_eq!(status, 200);
    assert!(doc["paths"]["/v1/functions"].is_object());
}

#[test]
fn create_get_update_and_download_code() {
    let s = TestServer::start();
    let code = python_zip("one");
    let created = s.create_function("thumb", &code);
    assert_eq!(created["state"], "LATEST");
    assert_eq!(created["memory_mb"], 128);
    assert_eq!(created["timeout_s"], 3);
    assert_eq!(created["code_sha256"], sha256_hex(&code));
    assert_eq!(created["arn"], format!("arn:aws:lambda:us-east-1:{}:function:thumb:$LATEST", s.account_id));

    let (status, patched) = s.call(s.req(Method::PATCH, "/v1/functions/thumb").json(&json!({
        "memory_mb": 512, "timeout_s": 30, "environment": {"MODE": "fast"}, "min_warm": 1
    })));
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["memory_mb"], 512);
    assert_eq!(patched["environment"]["MODE"], "fast");
    assert_eq!(patched["handler"], "app.handler", "untouched fields keep their value");
    assert_eq!(patched["revision"], 2);

    let new_code = python_zip("two");
    let (status, updated) = s.call(s.req(Method::PUT, "/v1/functions/thumb/code").body(new_code.clone()));
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["code_sha256"], sha256_hex(&new_code));
    assert_eq!(updated["state"], "LATEST");

    let resp = s.req(Method::GET, "/v1/functions/thumb/code").send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.bytes().unwrap().as_ref(), new_code.as_slice());
    // Only the current archive of $LATEST is kept on disk.
    let latest_files = files_under(&s.code_dir().join(&s.account_id).join("thumb/latest"));
    assert_eq!(latest_files.len(), 1, "{latest_files:?}");
}

#[test]
fn tar_gz_uploads_become_zips_that_keep_modes() {
    let s = TestServer::start();
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let mut h = tar::Header::new_gnu();
    let script = b"#!/bin/sh\necho hi\n";
    h.set_size(script.len() as u64);
    h.set_mode(0o755);
    h.set_cksum();
    b.append_data(&mut h, "bootstrap", &script[..]).unwrap();
    let tgz = b.into_inner().unwrap().finish().unwrap();
    let mut body = create_body("custom", &tgz);
    body["runtime"] = json!("provided.al2023");
    body.as_object_mut().unwrap().remove("handler");
    let (status, created) = s.post("/v1/functions", body);
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["handler"], "bootstrap");
    let zip_bytes = s.req(Method::GET, "/v1/functions/custom/code").send().unwrap().bytes().unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes.to_vec())).unwrap();
    assert_eq!(zip.by_name("bootstrap").unwrap().unix_mode().unwrap() & 0o777, 0o755);
}

#[test]
fn publish_versions_and_aliases() {
    let s = TestServer::start();
    let v1_code = python_zip("v1");
    s.create_function("f", &v1_code);
    let (status, v1) = s.post("/v1/functions/f/versions", json!({"description": "first"}));
    assert_eq!(status, 201, "{v1}");
    assert_eq!(v1["version"], 1);
    // Publishing again without a change returns the same version (as Lambda does).
    let (_, again) = s.post("/v1/functions/f/versions", json!({}));
    assert_eq!(again["version"], 1);
    let (_, f) = s.get("/v1/functions/f");
    assert_eq!(f["state"], "PUBLISHED");
    assert_eq!(f["latest_published"], 1);

    let v2_code = python_zip("v2");
    s.call(s.req(Method::PUT, "/v1/functions/f/code").body(v2_code.clone()));
    let (_, f) = s.get("/v1/functions/f");
    assert_eq!(f["state"], "LATEST");
    assert!(f["latest_published"].is_null());
    let (_, v2) = s.post("/v1/functions/f/versions", json!({}));
    assert_eq!(v2["version"], 2);

    // Version 1 is immutable: its code is still v1's.
    let old = s.req(Method::GET, "/v1/functions/f:1/code").send().unwrap().bytes().unwrap();
    assert_eq!(sha256_hex(&old), sha256_hex(&v1_code));

    let (status, alias) = s.call(s.req(Method::PUT, "/v1/functions/f/aliases/prod").json(&json!({"version": "1"})));
    assert_eq!(status, 200, "{alias}");
    assert_eq!(alias["arn"], format!("arn:aws:lambda:us-east-1:{}:function:f:prod", s.account_id));
    let (_, via_alias) = s.get("/v1/functions/f:prod");
    assert_eq!(via_alias["version"], "1");
    assert_eq!(via_alias["alias"], "prod");
    assert_eq!(via_alias["code_sha256"], sha256_hex(&v1_code));

    // Move it, with a weighted share to version 1.
    let (status, moved) = s.call(s.req(Method::PUT, "/v1/functions/f/aliases/prod").json(&json!({
        "version": "2", "additional_version": "1", "additional_weight": 0.1
    })));
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["revision"], 2);
    assert_eq!(moved["additional_weight"], 0.1);
    let arn = format!("arn:aws:lambda:us-east-1:{}:function:f:prod", s.account_id);
    let (_, via_arn) = s.get(&format!("/v1/functions/{arn}"));
    assert_eq!(via_arn["version"], "2");

    let (_, list) = s.get("/v1/functions/f/versions?limit=1");
    assert_eq!(list["versions"].as_array().unwrap().len(), 1);
    assert_eq!(list["next_cursor"], "1");
    let (_, rest) = s.get("/v1/functions/f/versions?limit=1&cursor=1");
    assert_eq!(rest["versions"][0]["version"], 2);
    assert!(rest["next_cursor"].is_null());

    // One version goes only once no alias routes to it (prod routes to 1 and 2 now); bad numbers are named.
    let delete = |path: &str| s.call(s.req(Method::DELETE, path));
    let (status, body) = delete("/v1/functions/f/versions/2");
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("prod"), "{body}");
    for bad in ["0", "latest", "$LATEST"] {
        let (status, body) = delete(&format!("/v1/functions/f/versions/{bad}"));
        assert_eq!((status, body["error"]["field"].as_str()), (400, Some("version")), "{bad}: {body}");
    }
    let (status, _) = delete("/v1/functions/f/aliases/prod");
    assert_eq!(status, 204);
    let (_, aliases) = s.get("/v1/functions/f/aliases");
    assert_eq!(aliases["aliases"].as_array().unwrap().len(), 0);
    let (status, _) = delete("/v1/functions/f/versions/2");
    assert_eq!(status, 204);
    let (status, body) = delete("/v1/functions/f/versions/2");
    assert_eq!(status, 404, "{body}");
    let (_, left) = s.get("/v1/functions/f/versions");
    let left: Vec<u64> = left["versions"].as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap()).collect();
    assert_eq!(left, [1]);
    // From the CLI: `stoke fn rm f:1`; an alias is no version.
    let out = s.cli().args(["fn", "rm", "f:prod"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not prod"));
    let out = s.cli().args(["fn", "rm", "f:1"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("version 1 of function f deleted"));
    let (_, left) = s.get("/v1/functions/f/versions");
    assert_eq!(left["versions"], json!([]));
}

#[test]
fn lifecycle_block_unblock_retire() {
    let s = TestServer::start();
    s.create_function("f", &python_zip("x"));
    s.post("/v1/functions/f/versions", json!({}));
    let (status, blocked) = s.post("/v1/functions/f/block", json!({}));
    assert_eq!(status, 200);
    assert_eq!(blocked["state"], "BLOCKED");
    assert_eq!(blocked["allowed_actions"], json!(["publish", "unblock", "update", "retire"]));
    // A blocked function can be fixed without letting traffic in.
    let (status, fixed) = s.call(s.req(Method::PATCH, "/v1/functions/f").json(&json!({"timeout_s": 10})));
    assert_eq!(status, 200);
    assert_eq!(fixed["state"], "BLOCKED");
    let (_, unblocked) = s.post("/v1/functions/f/unblock", json!({}));
    assert_eq!(unblocked["state"], "LATEST", "$LATEST changed after publishing, so it is not PUBLISHED");

    let (status, retired) = s.post("/v1/functions/f/retire", json!({}));
    assert_eq!(status, 200);
    assert_eq!(retired["state"], "RETIRED");
    assert_eq!(retired["allowed_actions"], json!([]));
    // With nothing in flight the function is deleted shortly after: its record, then its archives.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.get("/v1/functions/f").0 != 404 || !files_under(&s.code_dir().join(&s.account_id)).is_empty() {
        assert!(std::time::Instant::now() < deadline, "retired function was not deleted with its code");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn list_is_paginated() {
    let s = TestServer::start();
    for i in 0..7 {
        s.create_function(&format!("fn-{i}"), &python_zip(&i.to_string()));
    }
    let mut names = vec![];
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/functions?limit=3&cursor={c}"),
            None => "/v1/functions?limit=3".into(),
        };
        let (status, page) = s.get(&path);
        assert_eq!(status, 200);
        pages += 1;
        names.extend(page["functions"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, (0..7).map(|i| format!("fn-{i}")).collect::<Vec<_>>());
}

#[test]
fn accounts_never_see_each_others_functions() {
    let s = TestServer::start();
    s.create_function("private", &python_zip("a"));
    let (key_b, account_b) = s.new_account("team-b");
    // B sees nothing of A's.
    let (status, list) = s.call(s.req_as(&key_b, Method::GET, "/v1/functions"));
    assert_eq!(status, 200);
    assert_eq!(list["functions"].as_array().unwrap().len(), 0);
    assert_eq!(s.call(s.req_as(&key_b, Method::GET, "/v1/functions/private")).0, 404);
    assert_eq!(s.call(s.req_as(&key_b, Method::PUT, "/v1/functions/private/code").body(python_zip("evil"))).0, 404);
    assert_eq!(s.call(s.req_as(&key_b, Method::DELETE, "/v1/functions/private")).0, 404);
    assert_eq!(s.call(s.req_as(&key_b, Method::POST, "/v1/functions/private/block")).0, 404);
    let arn = format!("arn:aws:lambda:us-east-1:{}:function:private", s.account_id);
    let resp = s.call(s.req_as(&key_b, Method::GET, &format!("/v1/functions/{arn}")));
    assert_error(&resp, 403, "cross_account", &account_b);
    // B may use the same name in its own account; A's function is untouched.
    let (status, _) =
        s.call(s.req_as(&key_b, Method::POST, "/v1/functions").json(&create_body("private", &python_zip("b"))));
    assert_eq!(status, 201);
    let (_, a_view) = s.get("/v1/functions/private");
    assert_eq!(a_view["code_sha256"], sha256_hex(&python_zip("a")));
    assert_eq!(a_view["revision"], 1);
}

#[test]
fn data_survives_a_clean_restart() {
    let mut s = TestServer::start();
    let code = python_zip("keep");
    s.create_function("keep", &code);
    s.post("/v1/functions/keep/versions", json!({}));
    s.call(s.req(Method::PUT, "/v1/functions/keep/aliases/prod").json(&json!({"version": "1"})));
    let key = s.api_key.clone();
    s.kill9();
    s.launch();
    assert_eq!(s.api_key, key, "credentials are not regenerated on restart");
    let (status, f) = s.get("/v1/functions/keep:prod");
    assert_eq!(status, 200);
    assert_eq!(f["code_sha256"], sha256_hex(&code));
}
