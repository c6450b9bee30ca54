//! What a generic instance learns when it is given a function: the program to run, its arguments, its
//! working directory and its environment. The server writes it to the instance's stdin; the set-up helper
//! (for an instance that waits to start its runtime) or the pre-started runtime itself (stoke's Python
//! bootstrap) reads it.
//!
//! Wire format: NUL-terminated items, each tagged by its first byte — `p` program, `a` argument, `c` working
//! directory, `e` environment entry `KEY=VALUE` — and an empty item to end.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
}

/// Most bytes an assignment may take (the environment is limited to 4 KB; paths and arguments are short).
const MAX_BYTES: usize = 1 << 20;

impl Assignment {
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut item = |tag: u8, bytes: &[u8]| {
            if bytes.contains(&0) {
                return Err(format!("an assignment item holds a NUL byte: {}", String::from_utf8_lossy(bytes)));
            }
            out.push(tag);
            out.extend_from_slice(bytes);
            out.push(0);
            Ok(())
        };
        item(b'p', self.program.as_os_str().as_bytes())?;
        for a in &self.args {
            item(b'a', a.as_bytes())?;
        }
        item(b'c', self.cwd.as_os_str().as_bytes())?;
        for (k, v) in &self.env {
            item(b'e', format!("{k}={v}").as_bytes())?;
        }
        out.push(0);
        Ok(out)
    }

    /// Parses one assignment; the error names what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Assignment, String> {
        let mut a = Assignment::default();
        let mut ended = false;
        // Items are NUL-terminated: what follows the last NUL is no item.
        let mut items: Vec<&[u8]> = bytes.split(|b| *b == 0).collect();
        items.pop();
        for item in items {
            let Some((&tag, rest)) = item.split_first() else {
                ended = true;
                break;
            };
            match tag {
                b'p' => a.program = PathBuf::from(OsString::from_vec(rest.to_vec())),
                b'a' => a.args.push(OsString::from_vec(rest.to_vec())),
                b'c' => a.cwd = PathBuf::from(OsString::from_vec(rest.to_vec())),
                b'e' => {
                    let text = String::from_utf8_lossy(rest);
                    let (k, v) =
                        text.split_once('=').ok_or_else(|| format!("environment entry {text:?} has no '='"))?;
                    a.env.push((k.to_string(), v.to_string()));
                }
                other => return Err(format!("unknown assignment item {:?}", other as char)),
            }
        }
        if !ended {
            return Err("the assignment ended before its end marker".into());
        }
        if a.program.as_os_str().is_empty() {
            return Err("the assignment names no program".into());
        }
        Ok(a)
    }

    /// Reads one assignment from `r` (up to its end marker, nothing past it).
    pub fn read_from(r: &mut dyn Read) -> Result<Assignment, String> {
        let mut data = Vec::new();
        let mut byte = [0u8; 1];
        let mut last = None;
        loop {
            match r.read(&mut byte) {
                Ok(0) => return Err("the server closed the assignment pipe before giving one".into()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("cannot read the assignment: {e}")),
            }
            data.push(byte[0]);
            // The end marker: an empty item, i.e. a NUL right after a NUL (or first).
            if byte[0] == 0 && last.is_none_or(|l| l == 0) {
                return Assignment::decode(&data);
            }
            last = Some(byte[0]);
            if data.len() > MAX_BYTES {
                return Err("the assignment is too large".into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Assignment {
        Assignment {
            program: "/usr/bin/python3".into(),
            args: vec!["-S".into(), "-u".into(), "/var/runtime/boot.py".into()],
            cwd: "/var/task".into(),
            env: vec![("A".into(), "1=2".into()), ("EMPTY".into(), String::new()), ("N".into(), "é".into())],
        }
    }

    #[test]
    fn round_trips_and_reads_exactly_one() {
        let a = sample();
        let mut bytes = a.encode().unwrap();
        assert_eq!(Assignment::decode(&bytes).unwrap(), a);
        bytes.extend_from_slice(b"trailing");
        let mut r = std::io::Cursor::new(bytes);
        assert_eq!(Assignment::read_from(&mut r).unwrap(), a);
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "trailing", "nothing past the end marker is consumed");
    }

    #[test]
    fn malformed_assignments_are_refused_with_the_reason() {
        assert!(Assignment::decode(b"p/bin/x\0").unwrap_err().contains("end marker"));
        assert!(Assignment::decode(b"a-x\0\0").unwrap_err().contains("no program"));
        assert!(Assignment::decode(b"p/x\0eNOEQUALS\0\0").unwrap_err().contains("no '='"));
        assert!(Assignment::decode(b"p/x\0zwhat\0\0").unwrap_err().contains("unknown"));
        assert!(Assignment::read_from(&mut std::io::Cursor::new(b"p/x\0".to_vec())).unwrap_err().contains("closed"));
        let bad = Assignment { env: vec![("K".into(), "a\0b".into())], ..sample() };
        assert!(bad.encode().unwrap_err().contains("NUL"));
    }
}
