//! Alias routing: an alias points at one version and may send a weighted share to a second one.

use serde::{Deserialize, Serialize};

/// Where an alias sends invocations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AliasRouting {
    /// The primary version: a version number as a string, or `$LATEST`.
    pub version: String,
    /// A second published version that receives `additional_weight` of the traffic.
    pub additional_version: Option<String>,
    /// Share of invocations (0 < w < 1) that go to `additional_version`.
    pub additional_weight: Option<f64>,
}

impl AliasRouting {
    /// Whether the alias sends invocations to `version` (its primary or its additional version): such a
    /// version cannot be deleted while the alias does.
    pub fn routes_to(&self, version: &str) -> bool {
        self.version == version || self.additional_version.as_deref() == Some(version)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RoutingError {
    pub field: &'static str,
    pub message: String,
}

impl AliasRouting {
    /// Checks the routing rules that do not depend on which versions exist.
    pub fn validate(&self) -> Result<(), RoutingError> {
        match (&self.additional_version, self.additional_weight) {
            (None, None) => Ok(()),
            (Some(_), None) | (None, Some(_)) => Err(RoutingError {
                field: "additional_weight",
                message: "additional_version and additional_weight go together: give both or neither".into(),
            }),
            (Some(extra), Some(w)) => {
                if !(w > 0.0 && w < 1.0) {
                    return Err(RoutingError {
                        field: "additional_weight",
                        message: format!("additional_weight {w} is not valid: it must be between 0 and 1, exclusive"),
                    });
                }
                if *extra == self.version {
                    return Err(RoutingError {
                        field: "additional_version",
                        message: format!("additional_version {extra} is the alias's own version; pick another"),
                    });
                }
                if self.version == "$LATEST" || extra == "$LATEST" {
                    return Err(RoutingError {
                        field: "additional_version",
                        message: "weighted routing works between published versions only, not $LATEST".into(),
                    });
                }
                Ok(())
            }
        }
    }

    /// The version an invocation goes to, given a uniform sample `u` in [0, 1).
    pub fn pick(&self, u: f64) -> &str {
        match (&self.additional_version, self.additional_weight) {
            (Some(extra), Some(w)) if u < w => extra,
            _ => &self.version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing(extra: Option<&str>, w: Option<f64>) -> AliasRouting {
        AliasRouting { version: "1".into(), additional_version: extra.map(Into::into), additional_weight: w }
    }

    #[test]
    fn weights_must_be_a_proper_fraction_and_come_with_a_version() {
        routing(None, None).validate().unwrap();
        routing(Some("2"), Some(0.1)).validate().unwrap();
        for (extra, w) in [
            (Some("2"), Some(0.0)),
            (Some("2"), Some(1.0)),
            (Some("2"), None),
            (None, Some(0.5)),
            (Some("1"), Some(0.5)),
            (Some("$LATEST"), Some(0.5)),
        ] {
            assert!(routing(extra, w).validate().is_err(), "{extra:?} {w:?}");
        }
    }

    #[test]
    fn pick_splits_by_weight() {
        let r = routing(Some("2"), Some(0.25));
        assert_eq!(r.pick(0.0), "2");
        assert_eq!(r.pick(0.2499), "2");
        assert_eq!(r.pick(0.25), "1");
        assert_eq!(r.pick(0.99), "1");
        let share = (0..1000).filter(|i| r.pick(*i as f64 / 1000.0) == "2").count();
        assert_eq!(share, 250);
        assert_eq!(routing(None, None).pick(0.0), "1");
    }
}
