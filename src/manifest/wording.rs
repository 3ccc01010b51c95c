//! Decoder messages in a user's words.

/// serde's wording in a user's: `invalid type: string "80", expected i32`
/// becomes `expected an integer, found the string "80"`.
pub(super) fn plain_words(message: &str) -> String {
    let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    else {
        return message.to_string();
    };
    let Some((found, expected)) = rest.split_once(", expected ") else {
        return message.to_string();
    };
    let expected = match expected {
        "i32" | "i64" | "u32" | "u64" | "u16" | "u8" | "i16" | "i8" => "an integer",
        "f64" | "f32" => "a number",
        "a boolean" => "true or false",
        other => other,
    };
    let found = found
        .replace("floating point", "the number")
        .replace("string", "the string");
    let found = match found.as_str() {
        "map" => "a mapping".to_string(),
        "sequence" => "a list".to_string(),
        "null" | "unit value" => "nothing (null)".to_string(),
        "boolean `true`" | "boolean `false`" => found.replace("boolean ", "").replace('`', ""),
        _ => found,
    };
    format!("expected {expected}, found {found}")
}
