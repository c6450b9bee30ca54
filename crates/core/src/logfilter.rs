//! CloudWatch Logs filter patterns (`FilterLogEvents`' `filterPattern`), as AWS documents them ("Filter pattern
//! syntax for metric filters, subscription filters, and filter log events"):
//!
//! - empty: every event;
//! - terms: `ERROR timeout` (every term appears, case-sensitive), `"a phrase"`, `-term` (must not appear),
//!   `?a ?b` (any of them);
//! - JSON: `{ $.level = "ERROR" && ($.code != 200 || $.user.name = "x*") }`, on events whose message is a JSON
//!   object — `=` / `!=` against a string (`*` a wildcard) or a number, `<`, `<=`, `>`, `>=` against a number,
//!   `IS TRUE`/`IS FALSE`/`IS NULL`, `NOT EXISTS`; `&&`, `||` and parentheses.
//!
//! What AWS's syntax has beyond this (space-delimited `[a, b]` patterns, regular expressions `%…%`) is refused
//! with a message, never read as something else.

use serde_json::Value;

/// A parsed filter pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    All,
    Terms(Terms),
    Json(Expr),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Terms {
    required: Vec<String>,
    excluded: Vec<String>,
    any: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(Vec<String>, Op, Literal),
    Is(Vec<String>, Literal),
    NotExists(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

impl Pattern {
    /// Parses `text`; an error says what is wrong in AWS's terms.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let t = text.trim();
        if t.is_empty() {
            return Ok(Pattern::All);
        }
        if t.starts_with('{') {
            let inner = t.strip_prefix('{').and_then(|r| r.strip_suffix('}')).ok_or_else(|| {
                format!("filter pattern {text:?} opens a JSON pattern with '{{' but does not close it")
            })?;
            let mut p = Parser { tokens: tokenize(inner)?, at: 0 };
            let expr = p.or()?;
            if p.at != p.tokens.len() {
                return Err(format!("filter pattern {text:?}: unexpected {:?}", p.tokens[p.at]));
            }
            return Ok(Pattern::Json(expr));
        }
        if t.starts_with('[') || t.contains('%') {
            return Err(format!(
                "filter pattern {text:?} is a space-delimited or regular-expression pattern, which this server does \
                 not support: use terms (\"a phrase\", -exclude, ?either) or a JSON pattern ({{ $.field = \"value\" }})"
            ));
        }
        terms(t).map(Pattern::Terms)
    }

    /// Whether an event's message passes.
    pub fn matches(&self, message: &str) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Terms(t) => {
                t.required.iter().all(|w| message.contains(w.as_str()))
                    && !t.excluded.iter().any(|w| message.contains(w.as_str()))
                    && (t.any.is_empty() || t.any.iter().any(|w| message.contains(w.as_str())))
            }
            Pattern::Json(e) => match serde_json::from_str::<Value>(message.trim()) {
                Ok(v @ Value::Object(_)) => e.eval(&v),
                _ => false,
            },
        }
    }
}

fn terms(text: &str) -> Result<Terms, String> {
    let mut out = Terms::default();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let sign = if c == '-' || c == '?' {
            chars.next();
            Some(c)
        } else {
            None
        };
        let word: String = if chars.peek() == Some(&'"') {
            chars.next();
            let mut w = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => w.extend(chars.next()),
                    Some(c) => w.push(c),
                    None => return Err(format!("filter pattern {text:?} has an unclosed quote")),
                }
            }
            w
        } else {
            std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())).collect()
        };
        if word.is_empty() {
            return Err(format!("filter pattern {text:?} has an empty term"));
        }
        match sign {
            Some('-') => out.excluded.push(word),
            Some(_) => out.any.push(word),
            None => out.required.push(word),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Selector(Vec<String>),
    Op(Op),
    Str(String),
    Num(f64),
    Word(String),
    And,
    Or,
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let b: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let two: String = b[i..(i + 2).min(b.len())].iter().collect();
        match c {
            _ if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            _ if two == "&&" => {
                out.push(Token::And);
                i += 2;
            }
            _ if two == "||" => {
                out.push(Token::Or);
                i += 2;
            }
            _ if two == "!=" => {
                out.push(Token::Op(Op::Ne));
                i += 2;
            }
            _ if two == "<=" => {
                out.push(Token::Op(Op::Le));
                i += 2;
            }
            _ if two == ">=" => {
                out.push(Token::Op(Op::Ge));
                i += 2;
            }
            '=' => {
                out.push(Token::Op(Op::Eq));
                i += 1 + usize::from(two == "==");
            }
            '<' => {
                out.push(Token::Op(Op::Lt));
                i += 1;
            }
            '>' => {
                out.push(Token::Op(Op::Gt));
                i += 1;
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match b.get(i) {
                        Some('"') => break,
                        Some('\\') => {
                            i += 1;
                            s.extend(b.get(i));
                        }
                        Some(c) => s.push(*c),
                        None => return Err(format!("JSON filter pattern {text:?} has an unclosed string")),
                    }
                    i += 1;
                }
                i += 1;
                out.push(Token::Str(s));
            }
            '$' => {
                let start = i;
                while i < b.len() && (b[i].is_alphanumeric() || "$._-[]".contains(b[i])) {
                    i += 1;
                }
                let raw: String = b[start..i].iter().collect();
                out.push(Token::Selector(selector(&raw)?));
            }
            _ => {
                let start = i;
                while i < b.len() && !b[i].is_whitespace() && !"()=!<>&|".contains(b[i]) {
                    i += 1;
                }
                let word: String = b[start..i].iter().collect();
                match word.parse::<f64>() {
                    Ok(n) if n.is_finite() => out.push(Token::Num(n)),
                    _ if word.is_empty() => return Err(format!("JSON filter pattern {text:?}: unexpected {c:?}")),
                    _ => out.push(Token::Word(word)),
                }
            }
        }
    }
    Ok(out)
}

/// `$.a.b[0]` → `["a", "b", "0"]`.
fn selector(raw: &str) -> Result<Vec<String>, String> {
    let rest = raw.strip_prefix("$.").ok_or_else(|| format!("selector {raw:?} must start with $."))?;
    let parts: Vec<String> =
        rest.split(['.', '[']).map(|p| p.trim_end_matches(']').to_string()).filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return Err(format!("selector {raw:?} names no field"));
    }
    Ok(parts)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.term()?;
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            left = Expr::And(Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Token::Open) => {
                let e = self.or()?;
                match self.next() {
                    Some(Token::Close) => Ok(e),
                    _ => Err("a '(' in the JSON filter pattern is not closed".into()),
                }
            }
            Some(Token::Selector(path)) => match self.next() {
                Some(Token::Op(op)) => {
                    let value = match self.next() {
                        Some(Token::Str(s)) => Literal::Str(s),
                        Some(Token::Num(n)) => Literal::Num(n),
                        Some(Token::Word(w)) => Literal::Str(w),
                        other => return Err(format!("a comparison wants a value after its operator, not {other:?}")),
                    };
                    if matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge) && !matches!(value, Literal::Num(_)) {
                        return Err("<, <=, > and >= compare numbers only".into());
                    }
                    Ok(Expr::Compare(path, op, value))
                }
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("IS") => {
                    let value = match self.next() {
                        Some(Token::Word(v)) if v.eq_ignore_ascii_case("TRUE") => Literal::Bool(true),
                        Some(Token::Word(v)) if v.eq_ignore_ascii_case("FALSE") => Literal::Bool(false),
                        Some(Token::Word(v)) if v.eq_ignore_ascii_case("NULL") => Literal::Null,
                        other => return Err(format!("IS wants TRUE, FALSE or NULL, not {other:?}")),
                    };
                    Ok(Expr::Is(path, value))
                }
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("NOT") => match self.next() {
                    Some(Token::Word(e)) if e.eq_ignore_ascii_case("EXISTS") => Ok(Expr::NotExists(path)),
                    other => Err(format!("NOT wants EXISTS, not {other:?}")),
                },
                other => {
                    Err(format!("a selector wants an operator (=, !=, <, <=, >, >=, IS, NOT EXISTS), not {other:?}"))
                }
            },
            other => Err(format!("the JSON filter pattern wants a selector ($.field) or '(', not {other:?}")),
        }
    }
}

fn lookup<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, p| match v {
        Value::Object(o) => o.get(p),
        Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// `*` in `pattern` stands for any run of characters.
fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

impl Expr {
    fn eval(&self, v: &Value) -> bool {
        match self {
            Expr::And(a, b) => a.eval(v) && b.eval(v),
            Expr::Or(a, b) => a.eval(v) || b.eval(v),
            Expr::NotExists(p) => lookup(v, p).is_none(),
            Expr::Is(p, want) => match (lookup(v, p), want) {
                (Some(Value::Bool(b)), Literal::Bool(w)) => b == w,
                (Some(Value::Null), Literal::Null) => true,
                _ => false,
            },
            Expr::Compare(p, op, want) => {
                let Some(got) = lookup(v, p) else { return false };
                let equal = match (got, want) {
                    (Value::String(s), Literal::Str(w)) => Some(wildcard(w, s)),
                    (Value::Number(n), Literal::Num(w)) => n.as_f64().map(|n| n == *w),
                    (Value::Number(n), Literal::Str(w)) => Some(n.to_string() == *w),
                    (Value::Bool(b), Literal::Str(w)) => Some(b.to_string() == *w),
                    _ => None,
                };
                match op {
                    Op::Eq => equal == Some(true),
                    Op::Ne => equal == Some(false),
                    _ => {
                        let (Some(n), Literal::Num(w)) = (got.as_f64(), want) else { return false };
                        match op {
                            Op::Lt => n < *w,
                            Op::Le => n <= *w,
                            Op::Gt => n > *w,
                            _ => n >= *w,
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, message: &str) -> bool {
        Pattern::parse(pattern).unwrap_or_else(|e| panic!("{e}")).matches(message)
    }

    #[test]
    fn terms_phrases_exclusions_and_alternatives() {
        assert!(m("", "anything"));
        assert!(m("ERROR timeout", "an ERROR: timeout after 3 s"));
        assert!(!m("ERROR timeout", "an ERROR: refused"));
        assert!(!m("error", "ERROR"), "case-sensitive");
        assert!(m("\"timed out\"", "the call timed out"));
        assert!(!m("\"timed out\"", "out timed"));
        assert!(m("ERROR -retry", "ERROR once"));
        assert!(!m("ERROR -retry", "ERROR, retry"));
        assert!(m("?WARN ?ERROR", "a WARN"));
        assert!(!m("?WARN ?ERROR", "INFO only"));
    }

    #[test]
    fn json_patterns_select_compare_and_combine() {
        let arn = "arn:aws:lambda:us-east-1:1:function:f:$LATEST/durable-execution/n/x";
        let line = format!(
            r#"{{"level": "INFO", "executionArn": "{arn}", "code": 503, "user": {{"name": "ana"}}, "ok": true, "tags": ["a", "b"]}}"#
        );
        let by_arn = format!(r#"{{ ($.durableExecutionArn = "{arn}") || ($.executionArn = "{arn}") }}"#);
        assert!(m(&by_arn, &line));
        assert!(!m(&by_arn.replace("/x\"", "/y\""), &line));
        assert!(!m(&by_arn, "not JSON at all"), "a JSON pattern passes JSON objects only");
        assert!(m(r#"{ $.level = "INFO" && $.code >= 500 }"#, &line));
        assert!(!m(r#"{ $.level = "INFO" && $.code < 500 }"#, &line));
        assert!(m(r#"{ $.user.name = "a*" }"#, &line), "a wildcard");
        assert!(m(r#"{ $.user.name != "bob" }"#, &line));
        assert!(!m(r#"{ $.missing != "bob" }"#, &line), "an absent field compares to nothing");
        assert!(m("{ $.code = 503 }", &line));
        assert!(m("{ $.ok IS TRUE }", &line));
        assert!(m("{ $.gone NOT EXISTS }", &line));
        assert!(m(r#"{ $.tags[1] = "b" }"#, &line));
        assert!(m(r#"{ ($.level = "ERROR" || $.level = "INFO") && $.ok IS TRUE }"#, &line));
    }

    #[test]
    fn what_is_not_a_pattern_is_refused_with_a_reason() {
        for bad in [
            "{ $.a = \"x\"",
            "{ a = 1 }",
            "{ $.a }",
            "{ $.a < \"x\" }",
            "{ ($.a = 1 }",
            "{ $.a IS maybe }",
            "[ip, user]",
            "%ERROR%",
            "\"unclosed",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn wildcards_anchor_at_both_ends() {
        assert!(wildcard("a*c", "abc") && wildcard("a*", "a") && wildcard("*c", "abc") && wildcard("a*b*c", "aXbYc"));
        assert!(!wildcard("a*c", "abcd") && !wildcard("ab*ba", "aba"));
    }
}
