//! Which Dovecot the tests run: the host's (Debian 12's 2.3), or the one of a
//! root made by `make dovecot-2.4` (Debian 13's 2.4), chosen by
//! `OX_PUSH_DOVECOT_CONFIG` (that Dovecot's `dovecot-config`; unset: the host's).
//!
//! A 2.4 root's Dovecot runs chrooted, in a private mount namespace that gives
//! it `/proc` and shows the test's settings module (`libox_push_settings.so`)
//! in its compiled-in settings directory; every command (the master, doveadm,
//! dovecot-lda, doveconf) runs that way, so all see the same settings. Test
//! directories live under `ROOT/tmp`; files are handled by their host path,
//! and [`DovecotEnv::inner`] gives the path Dovecot sees. Mounts vanish with
//! the namespace: nothing is left mounted on the host.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub struct DovecotEnv {
    /// The root of a Dovecot that is not the host's.
    pub root: Option<PathBuf>,
    /// Dovecot 2.4 or later.
    pub v24: bool,
    /// The settings module to show in the root (2.4).
    pub settings_module: Option<PathBuf>,
}

/// The Dovecot of this test run.
pub fn dovecot_env() -> &'static DovecotEnv {
    static E: OnceLock<DovecotEnv> = OnceLock::new();
    E.get_or_init(|| {
        let Some(config) = std::env::var_os("OX_PUSH_DOVECOT_CONFIG") else {
            return DovecotEnv {
                root: None,
                v24: false,
                settings_module: None,
            };
        };
        let config = PathBuf::from(config);
        let text = std::fs::read_to_string(&config)
            .unwrap_or_else(|e| panic!("OX_PUSH_DOVECOT_CONFIG={}: {e}", config.display()));
        let root = config
            .to_string_lossy()
            .strip_suffix("/usr/lib/dovecot/dovecot-config")
            .filter(|r| !r.is_empty())
            .map(PathBuf::from);
        let include = text
            .lines()
            .find_map(|l| l.strip_prefix("dovecot_pkgincludedir="))
            .unwrap_or("/usr/include/dovecot")
            .to_string();
        let config_h = std::fs::read_to_string(format!(
            "{}{include}/config.h",
            root.as_ref()
                .map_or(String::new(), |r| r.display().to_string())
        ))
        .unwrap_or_default();
        let v24 = config_h.contains("#define DOVECOT_VERSION_MINOR 4")
            || config_h.contains("#define DOVECOT_VERSION_MAJOR 3");
        let settings_module =
            v24.then(|| {
                PathBuf::from(std::env::var_os("OX_PUSH_SETTINGS_MODULE").unwrap_or_else(|| {
                panic!("OX_PUSH_SETTINGS_MODULE must name libox_push_settings.so for Dovecot 2.4")
            }))
            });
        DovecotEnv {
            root,
            v24,
            settings_module,
        }
    })
}

/// How the relay socket's group is written in a service block.
pub fn internal_group() -> &'static str {
    if dovecot_env().v24 {
        "$SET:default_internal_group"
    } else {
        "$default_internal_group"
    }
}

impl DovecotEnv {
    /// A temporary directory Dovecot can see.
    pub fn tempdir(&self, prefix: &str) -> tempfile::TempDir {
        let b = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(self.host("/tmp"));
        let dir = b.unwrap();
        super::chmod(dir.path(), 0o755);
        dir
    }

    /// The host path of a path inside Dovecot's root.
    pub fn host(&self, inner: &str) -> PathBuf {
        match &self.root {
            Some(r) => r.join(inner.trim_start_matches('/')),
            None => PathBuf::from(inner),
        }
    }

    /// The path Dovecot sees for a host path (which must be inside its root).
    pub fn inner(&self, host: &Path) -> String {
        match &self.root {
            Some(r) => {
                let rel = host
                    .strip_prefix(r)
                    .unwrap_or_else(|_| panic!("{} is outside {}", host.display(), r.display()));
                format!("/{}", rel.display())
            }
            None => host.display().to_string(),
        }
    }

    /// (uid, gid) of a user in Dovecot's /etc/passwd.
    pub fn ids(&self, user: &str) -> (u32, u32) {
        let passwd = std::fs::read_to_string(self.host("/etc/passwd")).unwrap();
        passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 3 && f[0] == user)
            .map(|f| (f[2].parse().unwrap(), f[3].parse().unwrap()))
            .unwrap_or_else(|| panic!("no user {user} in Dovecot's /etc/passwd"))
    }

    /// The gid of a group in Dovecot's /etc/group.
    pub fn gid(&self, group: &str) -> u32 {
        let groups = std::fs::read_to_string(self.host("/etc/group")).unwrap();
        groups
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 2 && f[0] == group)
            .map(|f| f[2].parse().unwrap())
            .unwrap_or_else(|| panic!("no group {group} in Dovecot's /etc/group"))
    }

    /// A command that runs `program` (an absolute path as Dovecot sees it)
    /// the way this Dovecot runs: on the host, or chrooted into the root in a
    /// private mount namespace with `/proc` and the settings module of the
    /// test directory `settings` (`T/settings`, see [`DovecotEnv::prepare`]).
    pub fn command(&self, settings: &Path, program: &str) -> Command {
        let Some(root) = &self.root else {
            return Command::new(program);
        };
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "mount -t proc proc \"$1/proc\" && \
                 mount --bind \"$2\" \"$1/usr/lib/dovecot/modules/settings\" && \
                 r=$1 && shift 2 && exec chroot \"$r\" \"$@\"",
            )
            .arg("sh")
            .arg(root)
            .arg(settings)
            .arg(program);
        c
    }

    /// Prepares a test directory's `settings` dir (2.4): the root's own
    /// settings modules and ours, as hard links and a copy.
    pub fn prepare(&self, t: &Path) {
        let settings = t.join("settings");
        std::fs::create_dir_all(&settings).unwrap();
        let Some(module) = &self.settings_module else {
            return;
        };
        for e in std::fs::read_dir(self.host("/usr/lib/dovecot/modules/settings"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name();
            if name != "libox_push_settings.so" {
                std::fs::hard_link(e.path(), settings.join(&name))
                    .or_else(|_| std::fs::copy(e.path(), settings.join(&name)).map(|_| ()))
                    .unwrap();
            }
        }
        std::fs::copy(module, settings.join("libox_push_settings.so")).unwrap();
    }
}
