//! Configuration loading and validation on arbitrary TOML text: every input is a configuration
//! or a list of errors, never a panic. Inputs that are not UTF-8 are skipped (a file that is not
//! UTF-8 is refused before parsing).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(errors) = hookbridge::config::from_toml_str(text, "fuzz.toml") {
            let _ = errors.to_string();
        }
    }
});
