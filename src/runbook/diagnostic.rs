//! Problems found in a runbook: a stable code, where, what, and how to fix it.
//!
//! Every code is documented in `docs/diagnostics.md`; the codes never change meaning once
//! released, so scripts and editors can rely on them.

use std::fmt;

use serde::Serialize;

/// A position in the runbook text: 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
pub struct Mark {
    pub line: u32,
    pub column: u32,
}

impl Mark {
    /// The start of the file, where problems with the file as a whole are reported.
    pub const START: Mark = Mark { line: 1, column: 1 };

    pub fn new(line: u32, column: u32) -> Mark {
        Mark { line, column }
    }
}

/// A closed set of stable diagnostic codes, each with the text printed and a one-line summary:
/// `codes! { "RB0010"; Variant = "RB0010": "summary", ... }` makes `Code` with `ALL`, `as_str`
/// and `summary`. Runbook validation and the CACAO import each have their own set.
macro_rules! codes {
    ($example:literal; $($variant:ident = $code:literal: $summary:literal,)*) => {
        /// The stable code of each kind of problem.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $(#[doc = $summary] $variant,)*
        }

        impl Code {
            /// Every code, in numeric order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            #[doc = concat!("The code as printed, for example `", $example, "`.")]
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// One line saying what the code means.
            pub fn summary(self) -> &'static str {
                match self { $(Code::$variant => $summary,)* }
            }
        }
    };
}
pub(crate) use codes;

codes! {
    "RB0010";
    FileTooLarge = "RB0001": "the file is larger than the size limit",
    NotUtf8 = "RB0002": "the file is not valid UTF-8",
    EmptyFile = "RB0003": "the file is empty",
    YamlSyntax = "RB0004": "the YAML does not parse",
    YamlTooComplex = "RB0005": "the YAML nests too deeply or expands aliases too far",
    YamlUnsupported = "RB0006": "a YAML feature runbooks do not use (several documents, tags)",
    DuplicateKey = "RB0007": "a key appears twice in one mapping",
    UnknownKey = "RB0010": "a key that this place in a runbook does not have",
    MissingKey = "RB0011": "a required key is missing",
    WrongType = "RB0012": "a value has the wrong type",
    InvalidValue = "RB0013": "a value is not one of those allowed",
    BadApiVersion = "RB0014": "`apiVersion` or `kind` is not `phasegate/v1` / `Runbook`",
    BadId = "RB0015": "an identifier has characters or a shape that ids may not have",
    DuplicateId = "RB0020": "two phases, steps, gates or triggers share an id",
    UnknownPhase = "RB0021": "`needs` names a phase that does not exist",
    DependencyCycle = "RB0022": "phases depend on each other in a cycle",
    ActionCount = "RB0023": "a step, gate, channel or trigger says not exactly one thing to do",
    EmptyList = "RB0024": "a list that must have at least one entry is empty",
    MissingInput = "RB0025": "a trigger starts an incident without giving a required input",
    BadGate = "RB0026": "a gate whose settings contradict each other or can never hold",
    ConditionSyntax = "RB0030": "a CEL condition does not parse",
    ConditionTooComplex = "RB0031": "a CEL condition is too long or nests too deeply",
    ConditionReference = "RB0032": "a CEL condition refers to something that does not exist",
    ConditionOrder = "RB0033": "a condition reads a phase or step that is not sure to have run by then",
    UndeclaredControl = "RB0040": "a relax or reinstate step names a control the runbook does not declare",
    NeverReinstated = "RB0041": "a relaxed control is not reinstated by any later phase",
    UnapprovedRelaxation = "RB0042": "a control is relaxed in a phase that no approval gate guards",
    BadDuration = "RB0043": "a duration does not parse, or is shorter than a second or longer than a year",
    RelaxationTooLong = "RB0044": "a relaxation's expiry is longer than the control allows",
    UnknownRole = "RB0050": "an approval or assignment names a role the runbook does not declare",
    ImpossibleApproval = "RB0051": "an approval can never be given: it names no role or asks for no approver",
    UnknownRightsRole = "RB0052": "`rights` or an audience's `senders` names a role the runbook does not declare",
    MissingTemplate = "RB0060": "a template does not exist",
    TemplateSyntax = "RB0061": "a template does not parse",
    TemplateVariable = "RB0062": "a template uses a variable the engine does not provide",
    UnknownAudience = "RB0063": "a notify step or status update names an undeclared audience",
    UnknownChannel = "RB0064": "an audience or campaign names an undeclared channel",
    CampaignOnlyChannel = "RB0065": "an audience or notify step names a batch or spool channel, which carry campaign messages only",
    NotCampaignChannel = "RB0066": "a campaign names a channel that is not an email, batch or spool channel",
    BadInputDefault = "RB0070": "an input's default or allowed value does not fit the input",
    UnknownInput = "RB0071": "a trigger or campaign names an input the runbook does not declare",
    UnknownGate = "RB0072": "a trigger satisfies a gate that does not exist or is not a signal gate",
    BadUrl = "RB0073": "a URL is not an absolute http or https URL",
    BadStepReference = "RB0074": "a `steps_done` gate names a step that is not in its phase",
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One problem: its code, where it is, what is wrong and, where it helps, what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub code: Code,
    #[serde(flatten)]
    pub mark: Mark,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(code: Code, mark: Mark, message: impl Into<String>) -> Diagnostic {
        Diagnostic { code, mark, message: message.into(), help: None }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_ordered() {
        let printed: Vec<&str> = Code::ALL.iter().map(|code| code.as_str()).collect();
        let mut sorted = printed.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(printed, sorted);
    }
}
