//! The server's own secrets: given explicitly (production), or generated on first run and kept
//! in `<data_dir>/secrets/` with owner-only permissions (development).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use secrecy::SecretString;

use crate::auth::{opaque, tokens};
use crate::config::Settings;

/// The secrets a server runs with.
pub struct Secrets {
    pub jwt: SecretString,
    pub opaque_setup: SecretString,
}

/// Takes the configured secrets, or loads/creates them in the data directory.
pub fn load(settings: &Settings) -> anyhow::Result<Secrets> {
    let dir = settings.data_dir.join("secrets");
    let jwt = match &settings.jwt_secret {
        Some(s) => s.clone(),
        None => load_or_create(&dir, "jwt_secret", tokens::new_jwt_secret)?,
    };
    let opaque_setup = match &settings.opaque_server_setup {
        Some(s) => s.clone(),
        None => {
            let s = load_or_create(&dir, "opaque_server_setup", opaque::new_server_setup)?;
            use secrecy::ExposeSecret;
            opaque::parse_server_setup(s.expose_secret()).map_err(|_| {
                anyhow::anyhow!("{} is corrupt", dir.join("opaque_server_setup").display())
            })?;
            s
        }
    };
    Ok(Secrets { jwt, opaque_setup })
}

/// Creates `dir` (mode 0700) if needed.
pub fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", dir.display()))?;
    }
    Ok(())
}

fn load_or_create(dir: &Path, name: &str, make: fn() -> String) -> anyhow::Result<SecretString> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(SecretString::from(s.trim().to_owned())),
        Ok(_) => anyhow::bail!(
            "{} is empty; delete it to generate a new one",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    ensure_private_dir(dir)?;
    let value = make();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(value.as_bytes())?;
    file.sync_all()?;
    tracing::info!(file = %path.display(), "generated a new secret");
    Ok(SecretString::from(value))
}
