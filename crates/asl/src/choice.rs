//! Choice rules: the 39 comparison operators, `And`/`Or`/`Not`, evaluated against a state's input.

use crate::path::{DataPath, Docs};
use serde_json::Value;
use std::cmp::Ordering;
use stoke_core::time::parse_rfc3339;

/// A Choice rule (a top-level one also has a `Next`, kept by the state).
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Not(Box<Rule>),
    Test { variable: DataPath, op: Op, operand: Operand },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Literal(Value),
    Path(DataPath),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Numeric,
    Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Compare(Kind, Ordering, bool),
    BooleanEquals,
    StringMatches,
    IsNull,
    IsPresent,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

const COMPARISONS: [(&str, Ordering, bool); 5] = [
    ("Equals", Ordering::Equal, false),
    ("LessThan", Ordering::Less, false),
    ("GreaterThan", Ordering::Greater, false),
    ("LessThanEquals", Ordering::Less, true),
    ("GreaterThanEquals", Ordering::Greater, true),
];

/// Every data-test operator name (39 with the `…Path` forms).
pub fn operators() -> Vec<String> {
    let mut out = Vec::new();
    for kind in ["String", "Numeric", "Timestamp"] {
        for (cmp, _, _) in COMPARISONS {
            out.push(format!("{kind}{cmp}"));
            out.push(format!("{kind}{cmp}Path"));
        }
    }
    out.extend(["BooleanEquals", "BooleanEqualsPath", "StringMatches"].map(String::from));
    out.extend(["IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp"].map(String::from));
    out
}

fn operator(name: &str) -> Option<(Op, bool)> {
    let (base, path) = match name.strip_suffix("Path") {
        Some(b) if b != "String" && b != "Numeric" && b != "Timestamp" => (b, true),
        _ => (name, false),
    };
    for (prefix, kind) in [("String", Kind::String), ("Numeric", Kind::Numeric), ("Timestamp", Kind::Timestamp)] {
        if let Some(cmp) = base.strip_prefix(prefix) {
            if let Some((_, ord, or_equal)) = COMPARISONS.iter().find(|(c, _, _)| *c == cmp) {
                return Some((Op::Compare(kind, *ord, *or_equal), path));
            }
        }
    }
    let op = match base {
        "BooleanEquals" => Op::BooleanEquals,
        "StringMatches" if !path => Op::StringMatches,
        "IsNull" if !path => Op::IsNull,
        "IsPresent" if !path => Op::IsPresent,
        "IsNumeric" if !path => Op::IsNumeric,
        "IsString" if !path => Op::IsString,
        "IsBoolean" if !path => Op::IsBoolean,
        "IsTimestamp" if !path => Op::IsTimestamp,
        _ => return None,
    };
    Some((op, path))
}

impl Rule {
    /// Parses a rule object; `top` rules carry `Next` (and may carry `Assign`/`Comment`), nested ones not.
    pub fn parse(v: &Value, top: bool) -> Result<Rule, String> {
        let Value::Object(map) = v else { return Err("a Choice rule must be an object".into()) };
        let mut rule = None;
        let mut variable = None;
        for (key, value) in map {
            match key.as_str() {
                "Next" if top => {}
                "Next" => return Err("a nested rule (inside And, Or or Not) cannot have Next".into()),
                "Comment" | "Assign" => {}
                "Variable" => {
                    let text = value.as_str().ok_or("Variable must be a string path")?;
                    variable = Some(DataPath::parse(text).map_err(|e| format!("Variable: {e}"))?);
                }
                "And" | "Or" => {
                    let items = value
                        .as_array()
                        .filter(|a| !a.is_empty())
                        .ok_or(format!("{key} must be a non-empty array of rules"))?;
                    let rules = items.iter().map(|r| Rule::parse(r, false)).collect::<Result<Vec<_>, _>>()?;
                    set_once(&mut rule, if key == "And" { Rule::And(rules) } else { Rule::Or(rules) }, key)?;
                }
                "Not" => set_once(&mut rule, Rule::Not(Box::new(Rule::parse(value, false)?)), key)?,
                other => {
                    let (op, is_path) = operator(other).ok_or_else(|| {
                        format!(
                            "unknown field '{other}' in a Choice rule; the operators are {}",
                            operators().join(", ")
                        )
                    })?;
                    let operand = if is_path {
                        let text = value.as_str().ok_or(format!("{other} must be a string path"))?;
                        Operand::Path(DataPath::parse(text).map_err(|e| format!("{other}: {e}"))?)
                    } else {
                        check_literal(op, other, value)?;
                        Operand::Literal(value.clone())
                    };
                    let placeholder = DataPath::parse("$").map_err(|e| e.to_string())?;
                    set_once(&mut rule, Rule::Test { variable: placeholder, op, operand }, other)?;
                }
            }
        }
        match (rule, variable) {
            (Some(Rule::Test { op, operand, .. }), Some(variable)) => Ok(Rule::Test { variable, op, operand }),
            (Some(Rule::Test { .. }), None) => Err("a comparison needs a Variable".into()),
            (Some(_), Some(_)) => Err("And, Or and Not rules cannot have a Variable".into()),
            (Some(r), None) => Ok(r),
            (None, _) => Err("a Choice rule needs one comparison operator, or And, Or or Not".into()),
        }
    }

    /// Evaluates the rule; missing variables make comparisons false (and `IsPresent` false).
    pub fn eval(&self, docs: &Docs<'_>) -> bool {
        match self {
            Rule::And(rs) => rs.iter().all(|r| r.eval(docs)),
            Rule::Or(rs) => rs.iter().any(|r| r.eval(docs)),
            Rule::Not(r) => !r.eval(docs),
            Rule::Test { variable, op, operand } => {
                let value = variable.find(docs);
                let operand = match operand {
                    Operand::Literal(v) => Some(v.clone()),
                    Operand::Path(p) => p.find(docs),
                };
                test(*op, value.as_ref(), operand.as_ref())
            }
        }
    }
}

fn set_once(slot: &mut Option<Rule>, rule: Rule, key: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("a Choice rule has exactly one operator; '{key}' is one too many"));
    }
    *slot = Some(rule);
    Ok(())
}

fn check_literal(op: Op, name: &str, v: &Value) -> Result<(), String> {
    let ok = match op {
        Op::Compare(Kind::String, ..) | Op::StringMatches => v.is_string(),
        Op::Compare(Kind::Numeric, ..) => v.is_number(),
        Op::Compare(Kind::Timestamp, ..) => v.as_str().and_then(parse_rfc3339).is_some(),
        _ => v.is_boolean(),
    };
    if ok {
        return Ok(());
    }
    let wanted = match op {
        Op::Compare(Kind::String, ..) | Op::StringMatches => "a string",
        Op::Compare(Kind::Numeric, ..) => "a number",
        Op::Compare(Kind::Timestamp, ..) => "an RFC 3339 timestamp string such as 2024-01-01T00:00:00Z",
        _ => "true or false",
    };
    Err(format!("{name} must be {wanted}, got {v}"))
}

fn test(op: Op, value: Option<&Value>, operand: Option<&Value>) -> bool {
    match op {
        Op::IsPresent => value.is_some() == (operand == Some(&Value::Bool(true))),
        Op::IsNull | Op::IsNumeric | Op::IsString | Op::IsBoolean | Op::IsTimestamp => {
            let Some(v) = value else { return false };
            let is = match op {
                Op::IsNull => v.is_null(),
                Op::IsNumeric => v.is_number(),
                Op::IsString => v.is_string(),
                Op::IsBoolean => v.is_boolean(),
                _ => v.as_str().and_then(parse_rfc3339).is_some(),
            };
            is == (operand == Some(&Value::Bool(true)))
        }
        Op::BooleanEquals => matches!((value, operand), (Some(Value::Bool(a)), Some(Value::Bool(b))) if a == b),
        Op::StringMatches => match (value, operand) {
            (Some(Value::String(s)), Some(Value::String(pattern))) => wildcard_match(pattern, s),
            _ => false,
        },
        Op::Compare(kind, ord, or_equal) => {
            let (Some(a), Some(b)) = (value, operand) else { return false };
            let got = match kind {
                Kind::String => match (a, b) {
                    (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
                    _ => None,
                },
                Kind::Numeric => match (a.as_f64(), b.as_f64()) {
                    (Some(x), Some(y)) if a.is_number() && b.is_number() => x.partial_cmp(&y),
                    _ => None,
                },
                Kind::Timestamp => match (a.as_str().and_then(parse_rfc3339), b.as_str().and_then(parse_rfc3339)) {
                    (Some(x), Some(y)) => Some(x.cmp(&y)),
                    _ => None,
                },
            };
            match got {
                Some(o) => o == ord || (or_equal && o == Ordering::Equal),
                None => false,
            }
        }
    }
}

/// `*` matches any run of characters; `\*` is a literal star and `\\` a literal backslash.
fn wildcard_match(pattern: &str, s: &str) -> bool {
    enum Tok {
        Char(char),
        Star,
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => toks.push(Tok::Char(chars.next().unwrap_or('\\'))),
            '*' => toks.push(Tok::Star),
            c => toks.push(Tok::Char(c)),
        }
    }
    let s: Vec<char> = s.chars().collect();
    // Classic two-pointer glob match with backtracking to the last star.
    let (mut p, mut i, mut star, mut mark) = (0, 0, None, 0);
    while i < s.len() {
        match toks.get(p) {
            Some(Tok::Char(c)) if *c == s[i] => {
                p += 1;
                i += 1;
            }
            Some(Tok::Star) => {
                star = Some(p);
                mark = i;
                p += 1;
            }
            _ => match star {
                Some(sp) => {
                    p = sp + 1;
                    mark += 1;
                    i = mark;
                }
                None => return false,
            },
        }
    }
    toks[p..].iter().all(|t| matches!(t, Tok::Star))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(v: Value) -> Rule {
        Rule::parse(&v, true).unwrap()
    }

    fn check(v: Value, input: &Value) -> bool {
        let context = json!({"State": {"Name": "C"}, "Execution": {"Input": {"limit": 5}}});
        let vars = json!({"answer": "yes", "limit": 3});
        let vars = vars.as_object().unwrap();
        rule(v).eval(&Docs { input, context: &context, vars })
    }

    #[test]
    fn there_are_39_operators_and_each_parses() {
        let ops = operators();
        assert_eq!(ops.len(), 39);
        for op in ops {
            let operand = if op.ends_with("Path") {
                json!("$.x")
            } else if op.starts_with("Numeric") {
                json!(1)
            } else if op.starts_with("Timestamp") {
                json!("2024-01-01T00:00:00Z")
            } else if op.starts_with("String") {
                json!("a")
            } else {
                json!(true)
            };
            Rule::parse(&json!({"Variable": "$.v", op.clone(): operand, "Next": "X"}), true)
                .unwrap_or_else(|e| panic!("{op}: {e}"));
        }
    }

    #[test]
    fn comparisons_follow_type_rules() {
        let i = json!({"s": "b", "n": 3, "f": 3.0, "t": "2024-01-01T12:00:00Z", "b": true, "nul": null, "other": 4});
        assert!(check(json!({"Variable": "$.s", "StringEquals": "b"}), &i));
        assert!(check(json!({"Variable": "$.s", "StringGreaterThan": "a"}), &i));
        assert!(check(json!({"Variable": "$.s", "StringLessThanEquals": "b"}), &i));
        assert!(!check(json!({"Variable": "$.n", "StringEquals": "3"}), &i), "a type mismatch is false");
        assert!(check(json!({"Variable": "$.n", "NumericEquals": 3}), &i));
        assert!(check(json!({"Variable": "$.f", "NumericEquals": 3}), &i));
        assert!(check(json!({"Variable": "$.n", "NumericLessThanPath": "$.other"}), &i));
        assert!(check(json!({"Variable": "$.n", "NumericLessThanPath": "$$.Execution.Input.limit"}), &i));
        assert!(!check(json!({"Variable": "$.n", "NumericLessThanPath": "$.missing"}), &i));
        assert!(check(json!({"Variable": "$.t", "TimestampGreaterThan": "2024-01-01T11:00:00Z"}), &i));
        assert!(check(json!({"Variable": "$.t", "TimestampEquals": "2024-01-01T13:00:00+01:00"}), &i));
        assert!(check(json!({"Variable": "$.b", "BooleanEquals": true}), &i));
        assert!(check(json!({"Variable": "$.nul", "IsNull": true}), &i));
        assert!(check(json!({"Variable": "$.s", "IsNull": false}), &i));
        assert!(!check(json!({"Variable": "$.missing", "IsNull": false}), &i), "a missing value is no type");
        assert!(check(json!({"Variable": "$.missing", "IsPresent": false}), &i));
        assert!(check(json!({"Variable": "$.nul", "IsPresent": true}), &i));
        assert!(check(json!({"Variable": "$.t", "IsTimestamp": true}), &i));
        assert!(check(json!({"Variable": "$.s", "IsString": true}), &i));
        assert!(check(json!({"Variable": "$.f", "IsNumeric": true}), &i));
        assert!(check(json!({"Variable": "$.b", "IsBoolean": true}), &i));
        assert!(check(json!({"Variable": "$$.State.Name", "StringEquals": "C"}), &i));
    }

    #[test]
    fn combinators_nest() {
        let i = json!({"a": 1, "b": "x"});
        let r = json!({"And": [{"Variable": "$.a", "NumericGreaterThan": 0},
                               {"Not": {"Variable": "$.b", "StringEquals": "y"}},
                               {"Or": [{"Variable": "$.a", "NumericEquals": 9}, {"Variable": "$.b", "StringMatches": "x*"}]}],
                       "Next": "Done"});
        assert!(check(r, &i));
    }

    #[test]
    fn string_matches_wildcards() {
        for (pattern, s, want) in [
            ("log-*.txt", "log-2024.txt", true),
            ("log-*.txt", "log-.txt", true),
            ("log-*.txt", "log-2024.csv", false),
            ("*", "", true),
            ("a*b*c", "aXXbYc", true),
            ("a*b*c", "aXXcYb", false),
            ("literal\\*star", "literal*star", true),
            ("literal\\*star", "literalXstar", false),
            ("", "", true),
            ("", "x", false),
        ] {
            assert_eq!(wildcard_match(pattern, s), want, "{pattern} vs {s}");
        }
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        for (v, needle) in [
            (json!({"Variable": "$.a", "StringEquals": 1, "Next": "X"}), "StringEquals must be a string"),
            (json!({"Variable": "$.a", "NumericEquals": "1", "Next": "X"}), "must be a number"),
            (json!({"Variable": "$.a", "TimestampEquals": "yesterday", "Next": "X"}), "RFC 3339"),
            (json!({"Variable": "$.a", "Next": "X"}), "needs one comparison"),
            (json!({"StringEquals": "a", "Next": "X"}), "needs a Variable"),
            (json!({"Variable": "$.a", "StringEqual": "a", "Next": "X"}), "unknown field 'StringEqual'"),
            (json!({"Variable": "$.a", "StringEquals": "a", "NumericEquals": 1, "Next": "X"}), "one too many"),
            (json!({"And": [], "Next": "X"}), "non-empty"),
            (json!({"Not": {"Variable": "$.a", "IsNull": true, "Next": "Y"}, "Next": "X"}), "cannot have Next"),
            (json!({"Variable": "a.b", "IsNull": true, "Next": "X"}), "starts with '$'"),
            (json!({"Variable": "$.a", "IsNull": "yes", "Next": "X"}), "true or false"),
        ] {
            let err = Rule::parse(&v, true).unwrap_err();
            assert!(err.contains(needle), "{v}: {err}");
        }
    }
}
