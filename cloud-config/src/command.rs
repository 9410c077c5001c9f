//! `config validate FILE [--json]` as both command lines run it (`tandem` on
//! the build host, `tandemctl` on a node): the crate's one I/O edge, so
//! that the two read, word and exit alike.

use std::io::Read;

/// Exit status when the file cannot be read (as for usage errors).
pub const CANNOT_READ: u8 = 2;

/// Reads `file` (`-`: standard input), prints its report (text, or JSON
/// with `json`) and returns the exit status: 0 valid, 1 invalid,
/// [`CANNOT_READ`]. `program` prefixes the message when it cannot be read.
pub fn validate_file(program: &str, file: &str, json: bool) -> u8 {
    let (label, text) = match read(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{program}: cannot read {file}: {e}");
            return CANNOT_READ;
        }
    };
    let v = crate::validate(&text);
    print!("{}", v.report.render(&label, json));
    v.report.exit_code()
}

/// The file's name for messages and its text (`-`: standard input).
fn read(file: &str) -> std::io::Result<(String, String)> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(("<stdin>".to_string(), text))
    } else {
        Ok((file.to_string(), std::fs::read_to_string(file)?))
    }
}
