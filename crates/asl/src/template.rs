//! Payload templates (`Parameters`, `ResultSelector`, `ItemSelector`): JSON where a key ending in `.$`
//! takes its value from a path on the input, a `$$` path on the context object, or an intrinsic call.

use crate::errors;
use crate::intrinsic::{looks_like_call, Call, Scope};
use crate::path::DataPath;
use crate::Failure;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    Literal(Value),
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
    Path(DataPath),
    Call(Call),
}

impl Template {
    /// Compiles a template; errors are `(location inside the template, message)`.
    pub fn compile(v: &Value) -> Result<Template, (String, String)> {
        Self::compile_at(v, "")
    }

    fn compile_at(v: &Value, at: &str) -> Result<Template, (String, String)> {
        match v {
            Value::Object(map) => {
                let mut fields: Vec<(String, Template)> = Vec::with_capacity(map.len());
                for (key, value) in map {
                    let here = format!("{at}.{key}");
                    let (name, t) = match key.strip_suffix(".$") {
                        Some(name) => {
                            let Some(text) = value.as_str() else {
                                return Err((
                                    here,
                                    format!("the value of '{key}' must be a path or an intrinsic call string"),
                                ));
                            };
                            let t = if looks_like_call(text) {
                                Template::Call(Call::parse(text).map_err(|e| (here.clone(), e))?)
                            } else if text.starts_with('$') {
                                Template::Path(DataPath::parse(text).map_err(|e| (here.clone(), e.to_string()))?)
                            } else {
                                return Err((
                                    here,
                                    format!(
                                        "'{text}' is neither a path (starting with $) nor an intrinsic call (States.…)"
                                    ),
                                ));
                            };
                            (name.to_string(), t)
                        }
                        None => (key.clone(), Self::compile_at(value, &here)?),
                    };
                    if fields.iter().any(|(n, _)| *n == name) {
                        return Err((here, format!("the field '{name}' appears twice once '.$' is stripped")));
                    }
                    fields.push((name, t));
                }
                Ok(Template::Object(fields))
            }
            Value::Array(items) => Ok(Template::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Self::compile_at(item, &format!("{at}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )),
            other => Ok(Template::Literal(other.clone())),
        }
    }

    /// Produces the payload; a missing path is `States.ParameterPathFailure`, a failing call
    /// `States.IntrinsicFailure`.
    pub fn eval(&self, scope: &mut Scope<'_>) -> Result<Value, Failure> {
        Ok(match self {
            Template::Literal(v) => v.clone(),
            Template::Object(fields) => {
                let mut out = Map::with_capacity(fields.len());
                for (k, t) in fields {
                    out.insert(k.clone(), t.eval(scope)?);
                }
                Value::Object(out)
            }
            Template::Array(items) => Value::Array(items.iter().map(|t| t.eval(scope)).collect::<Result<_, _>>()?),
            Template::Path(p) => p.get(&scope.docs).map_err(|e| Failure::new(errors::PARAMETER_PATH_FAILURE, e.0))?,
            Template::Call(c) => c.eval(scope).map_err(|e| Failure::new(errors::INTRINSIC_FAILURE, e))?,
        })
    }
}

/// A payload a state builds, in the state's query language: a JSONPath template (`Parameters`, `"k.$"`
/// fields) or a JSONata shape (`Arguments`, `"{% … %}"` strings).
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Paths(Template),
    Jsonata(crate::jsonata::Shape),
}

impl Payload {
    /// The field names of an object payload (the variables an `Assign` sets, `.$` stripped).
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Payload::Paths(Template::Object(fields)) => fields.iter().map(|(k, _)| k.as_str()).collect(),
            Payload::Paths(_) => Vec::new(),
            Payload::Jsonata(shape) => shape.keys(),
        }
    }

    /// Whether an object payload has the field `name` (a `lambda:invoke`'s `FunctionName`).
    pub fn names(&self, name: &str) -> bool {
        match self {
            Payload::Paths(Template::Object(fields)) => fields.iter().any(|(k, _)| k == name),
            Payload::Paths(_) => false,
            Payload::Jsonata(shape) => shape.keys().contains(&name),
        }
    }

    /// The text of an object payload's field `name` when the definition writes it literally (a
    /// `lambda:invoke`'s `FunctionName`, which the pre-warmer can then know before the state runs).
    pub fn literal_string(&self, name: &str) -> Option<String> {
        match self {
            Payload::Paths(Template::Object(fields)) => {
                fields.iter().find(|(n, _)| n == name).and_then(|(_, t)| match t {
                    Template::Literal(Value::String(s)) => Some(s.clone()),
                    _ => None,
                })
            }
            Payload::Paths(_) => None,
            Payload::Jsonata(shape) => match shape.field(name) {
                Some(crate::jsonata::Shape::Literal(Value::String(s))) => Some(s),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intrinsic::SeededEntropy;
    use serde_json::json;

    fn eval(template: Value, input: Value) -> Result<Value, Failure> {
        let mut entropy = SeededEntropy::new(1);
        let ctx = json!({"Execution": {"Name": "run-1"}, "Map": {"Item": {"Index": 2}}});
        let vars = Map::new();
        let docs = crate::path::Docs { input: &input, context: &ctx, vars: &vars };
        Template::compile(&template).unwrap().eval(&mut Scope { docs, entropy: &mut entropy })
    }

    #[test]
    fn fields_come_from_paths_context_and_calls() {
        let out = eval(
            json!({"static": {"n": [1, {"deep.$": "$.a"}]}, "copy.$": "$.a", "name.$": "$$.Execution.Name",
                   "idx.$": "$$.Map.Item.Index", "msg.$": "States.Format('{}-{}', $.a, $$.Execution.Name)"}),
            json!({"a": "x"}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"static": {"n": [1, {"deep": "x"}]}, "copy": "x", "name": "run-1", "idx": 2, "msg": "x-run-1"})
        );
    }

    #[test]
    fn failures_carry_the_asl_error_names() {
        let e = eval(json!({"x.$": "$.missing"}), json!({})).unwrap_err();
        assert_eq!(e.error, "States.ParameterPathFailure");
        let e = eval(json!({"x.$": "States.ArrayLength($.a)"}), json!({"a": 1})).unwrap_err();
        assert_eq!(e.error, "States.IntrinsicFailure");
    }

    #[test]
    fn bad_templates_are_rejected_at_compile_time() {
        for (t, needle) in [
            (json!({"a": 1, "a.$": "$.b"}), "appears twice"),
            (json!({"a.$": 5}), "must be a path"),
            (json!({"a.$": "hello"}), "neither a path"),
            (json!({"n": {"a.$": "$.["}}), "invalid JSONPath"),
            (json!({"a.$": "States.Nope()"}), "unknown intrinsic"),
        ] {
            let (at, err) = Template::compile(&t).unwrap_err();
            assert!(err.contains(needle), "{t}: {err}");
            assert!(at.starts_with('.'), "{at}");
        }
    }
}
