//! What a step declares about itself in `describe`; the schemas come from the step's types.

pub use crate::bindings::meridian::step::types::GrantKind;

/// A capability the step needs, shown to operators and checked against the workflow's grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// What kind of grant.
    pub kind: GrantKind,
    /// Exact — a URL (`https://api.example.com`), a connection name, an absolute guest path, a
    /// secret name — or, when it depends on the input, prose naming that input
    /// ("the URL in `endpoint`"); validation then only asks for some grant of the kind.
    pub detail: String,
}

/// The hand-written part of a step's manifest; [`crate::Step`]'s input and output types supply
/// the JSON Schemas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    /// Step name, e.g. `http-probe`.
    pub name: String,
    /// Semantic version of the step.
    pub version: String,
    /// One paragraph for operators.
    pub description: String,
    /// Capabilities it needs.
    pub needs: Vec<Need>,
    /// Whether the step is meaningful in plan mode (its effects go through recorded host calls).
    pub supports_plan: bool,
    /// Whether `compensate` undoes `run`.
    pub supports_compensate: bool,
}

impl ManifestInfo {
    /// A manifest with no needs that supports plan mode and has no compensation.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            needs: Vec::new(),
            supports_plan: true,
            supports_compensate: false,
        }
    }
    /// Sets the description.
    #[must_use]
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.description = d.into();
        self
    }
    /// Declares a need of `kind` (see [`Need::detail`] for what `detail` may say).
    #[must_use]
    pub fn needs(mut self, kind: GrantKind, detail: impl Into<String>) -> Self {
        self.needs.push(Need {
            kind,
            detail: detail.into(),
        });
        self
    }
    /// Sets whether the step supports plan mode.
    #[must_use]
    pub fn supports_plan(mut self, yes: bool) -> Self {
        self.supports_plan = yes;
        self
    }
    /// Sets whether `compensate` undoes `run`.
    #[must_use]
    pub fn supports_compensate(mut self, yes: bool) -> Self {
        self.supports_compensate = yes;
        self
    }
}
