//! `users.yml`: the logins the mock accepts and their capability overrides.
//!
//! Until the follow-up issue switches login to IMAP against Dovecot, this file is the user
//! directory. It also carries the per-context and per-user levels of OX's config cascade for
//! `com.openexchange.capability.mobile_mail_app`.

use serde::Deserialize;
use std::path::Path;

use super::{ConfigError, Secret};

/// One user: login name, password and OX ids.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub login: String,
    /// Checked only when login is not IMAP-backed (`mock.imap.host` unset).
    #[serde(default)]
    pub password: Secret,
    #[serde(rename = "userId")]
    pub user_id: i32,
    #[serde(rename = "contextId")]
    pub context_id: i32,
    /// Per-user override of `com.openexchange.capability.mobile_mail_app`.
    #[serde(default)]
    pub mobile_mail_app: Option<bool>,
}

/// Per-context override of `com.openexchange.capability.mobile_mail_app`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextEntry {
    #[serde(rename = "contextId")]
    pub context_id: i32,
    #[serde(default)]
    pub mobile_mail_app: Option<bool>,
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    #[serde(default)]
    pub users: Vec<UserEntry>,
    #[serde(default)]
    pub contexts: Vec<ContextEntry>,
}

impl UsersFile {
    pub fn load(path: &Path) -> Result<UsersFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
            file: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<UsersFile, ConfigError> {
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Invalid {
            file: path.display().to_string(),
            key: "users".into(),
            value: e.to_string(),
            expected: "a list `users:` of {login, password, userId, contextId, mobile_mail_app} \
                       and an optional list `contexts:` of {contextId, mobile_mail_app}"
                .into(),
        })
    }

    /// The user with this login name.
    pub fn find(&self, login: &str) -> Option<&UserEntry> {
        self.users.iter().find(|u| u.login == login)
    }

    /// The cascade user → context → server default for `mobile_mail_app`.
    pub fn mobile_mail_app(&self, context_id: i32, user_id: i32, server_default: bool) -> bool {
        let user = self
            .users
            .iter()
            .find(|u| u.context_id == context_id && u.user_id == user_id)
            .and_then(|u| u.mobile_mail_app);
        let ctx = self
            .contexts
            .iter()
            .find(|c| c.context_id == context_id)
            .and_then(|c| c.mobile_mail_app);
        user.or(ctx).unwrap_or(server_default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "users:\n  - login: a\n    password: pa\n    userId: 3\n    contextId: 1\n    mobile_mail_app: false\n  - login: b\n    password: pb\n    userId: 4\n    contextId: 1\n  - login: c\n    password: pc\n    userId: 5\n    contextId: 2\ncontexts:\n  - contextId: 1\n    mobile_mail_app: true\n";

    #[test]
    fn cascade_user_over_context_over_server() {
        let f = UsersFile::parse(TEXT, Path::new("users.yml")).unwrap();
        assert!(
            !f.mobile_mail_app(1, 3, true),
            "user false beats context true"
        );
        assert!(
            f.mobile_mail_app(1, 4, false),
            "context true beats server false"
        );
        assert!(!f.mobile_mail_app(2, 5, false), "server default");
        assert!(f.mobile_mail_app(2, 5, true));
        assert_eq!(f.find("b").unwrap().user_id, 4);
    }

    #[test]
    fn unknown_field_is_an_error_naming_the_file() {
        let err = UsersFile::parse(
            "users:\n  - login: a\n    pass: x\n",
            Path::new("/c/users.yml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/c/users.yml"), "{err}");
    }
}
