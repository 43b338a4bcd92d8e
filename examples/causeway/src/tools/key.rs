//! `causeway key NAME REALM`: the long-term keys of a user, to store in the
//! configuration instead of the password (`user = ["NAME:0xKEY"]`), as coturn's
//! `turnadmin -k` prints them. The password is read from standard input (one
//! line), never from the command line, where `ps` would show it.

use std::io::BufRead;

use clap::Args;
use turn_core::credentials::{long_term_key, long_term_key_sha256};

/// Flags of `causeway key`.
#[derive(Debug, Args)]
pub(crate) struct KeyArgs {
    /// The username.
    pub(crate) name: String,
    /// The realm (the reference deployment's is TANDBERG).
    pub(crate) realm: String,
}

/// The configuration lines of `name`'s keys for `password` in `realm`.
pub(crate) fn lines(name: &str, realm: &str, password: &str) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "# {name} in realm {realm}: either key, or both (a client negotiating SHA-256 needs it)\n\
         user = [\"{name}:0x{}\", \"{name}:0x{}\"]\n",
        hex(&long_term_key(name, realm, password)),
        hex(&long_term_key_sha256(name, realm, password)),
    )
}

/// Runs `key`.
pub(crate) fn run(args: &KeyArgs) -> Result<(), String> {
    if args.name.is_empty() || args.name.contains(':') {
        return Err("NAME must be non-empty and hold no `:`".into());
    }
    eprintln!("password for `{}` (one line on standard input):", args.name);
    let mut password = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .map_err(|e| format!("cannot read the password: {e}"))?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err("an empty password".into());
    }
    print!("{}", lines(&args.name, &args.realm, password));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_md5_key_is_coturns() {
        // RFC 5389 §15.4: MD5("user:realm:pass"); coturn's turnadmin -k prints
        // the same for `-u cmsturn -r TANDBERG -p pw`.
        let text = lines("cmsturn", "TANDBERG", "pw");
        let md5 = text.split("0x").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(md5.len(), 32);
        let hex: String = long_term_key("cmsturn", "TANDBERG", "pw")
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect();
        assert_eq!(md5, hex);
        assert!(text.contains(&format!("cmsturn:0x{hex}")));
    }
}
