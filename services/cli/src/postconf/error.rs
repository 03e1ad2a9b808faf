//! Why a postconf edit request was refused: each variant prints Postfix's postconf text
//! (after `postconf: fatal: `, exit status 1).

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("-e, -X, or -# accepts no multi-line input")]
    MainMultiLine,
    #[error("-e, -X, or -# accepts no comment input")]
    MainComment,
    #[error("-Me, -Fe, -Pe, -X, or -# accept no multi-line input")]
    MasterMultiLine,
    #[error("-Me, -Fe, -Pe, -X, or -# accept no comment input")]
    MasterComment,
    #[error("missing '=' after attribute name: \"{0}\"")]
    MissingEquals(String),
    #[error("-X or -# requires non-blank parameter names")]
    BlankNames,
    #[error("-X or -# requires parameter names without value")]
    ParameterWithValue,
    #[error("-X or -# requires names without value")]
    NameWithValue,
    #[error("bad parameter name: \"{0}\"")]
    BadParameterName(String),
    #[error("invalid service attribute name: \"{0}\"")]
    BadFieldName(String),
    /// A master.cf entry given on the command line that does not parse.
    #[error("{reason}: \"{raw}\"")]
    BadEntry { reason: String, raw: String },
    #[error("-Me, -MX or -M# requires service_name/type")]
    EntryUsage,
    #[error("-Fe or -FX requires service_name/type/field_name")]
    FieldUsage,
    #[error("-Pe or -PX requires service_name/type/parameter")]
    ParameterUsage,
    #[error("-Fe does not accept wild-card field name")]
    FieldWildcard,
    #[error("-Fe does not accept whitespace in non-command field")]
    FieldWhitespace,
    #[error("-Pe does not accept wild-card parameter name")]
    ParameterWildcard,
    #[error("-Pe does not accept whitespace in parameter value")]
    ParameterWhitespace,
    #[error("file {path}: line {line}: specify service name and type on the same line")]
    SplitEntry { path: String, line: usize },
    /// A master.cf line that does not parse.
    #[error("file {path}: line {line}: {reason}")]
    BadLine { path: String, line: usize, reason: String },
}
