//! `FLAKEFLEET_AUTH=iam`: AWS has checked the SigV4 signature before the
//! Lambda runs and put the signer in `requestContext.authorizer.iam`; this
//! module decides whether that signer was named by the operator.

/// One allowlist entry: an account, a role (any session of it) or a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// `123456789012` or `arn:aws:iam::123456789012:root`: any principal of the account.
    Account(String),
    /// `arn:aws:iam::123456789012:role/[path/]name`: any session of the role.
    Role { partition: String, account: String, name: String },
    /// `arn:aws:iam::123456789012:user/[path/]name`: that user.
    User(String),
}

/// The signer of a request, as AWS reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IamIdentity {
    pub account_id: String,
    /// `arn:aws:sts::<account>:assumed-role/<role>/<session>` or `arn:aws:iam::<account>:user/<name>`.
    pub user_arn: String,
}

impl Principal {
    pub fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        if is_account_id(entry) {
            return Ok(Self::Account(entry.to_owned()));
        }
        let bad = || {
            format!(
                "{entry:?} is not an account id (12 digits), a role ARN (arn:aws:iam::<account>:role/<name>) \
                 or a user ARN (arn:aws:iam::<account>:user/<name>); wildcards are not accepted"
            )
        };
        let parts: Vec<&str> = entry.splitn(6, ':').collect();
        let ["arn", partition, "iam", "", account, resource] = parts.as_slice() else {
            return Err(bad());
        };
        if partition.is_empty() || !is_account_id(account) || entry.contains('*') || entry.contains('?') {
            return Err(bad());
        }
        if *resource == "root" {
            return Ok(Self::Account((*account).to_owned()));
        }
        match resource.split_once('/') {
            Some(("role", path_and_name)) if !path_and_name.is_empty() && !path_and_name.ends_with('/') => {
                // An assumed-role ARN carries the role's name without its path.
                let name = path_and_name.rsplit('/').next().unwrap_or(path_and_name);
                Ok(Self::Role { partition: (*partition).to_owned(), account: (*account).to_owned(), name: name.into() })
            }
            Some(("user", name)) if !name.is_empty() && !name.ends_with('/') => Ok(Self::User(entry.to_owned())),
            _ => Err(bad()),
        }
    }

    pub fn matches(&self, caller: &IamIdentity) -> bool {
        match self {
            Self::Account(account) => *account == caller.account_id && arn_account(&caller.user_arn) == Some(account),
            Self::User(arn) => *arn == caller.user_arn,
            Self::Role { partition, account, name } => {
                let parts: Vec<&str> = caller.user_arn.splitn(6, ':').collect();
                let ["arn", caller_partition, "sts", "", caller_account, resource] = parts.as_slice() else {
                    return false;
                };
                let mut segments = resource.split('/');
                caller_partition == partition
                    && caller_account == account
                    && segments.next() == Some("assumed-role")
                    && segments.next() == Some(name.as_str())
                    && segments.next().is_some_and(|session| !session.is_empty())
                    && segments.next().is_none()
            }
        }
    }
}

/// Who may read (GET routes) and who may also write (POST routes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IamAllowlist {
    pub readers: Vec<Principal>,
    pub writers: Vec<Principal>,
}

impl Principal {
    /// The account the entry belongs to.
    pub fn account(&self) -> &str {
        match self {
            Self::Account(account) | Self::Role { account, .. } => account,
            Self::User(arn) => arn_account(arn).unwrap_or_default(),
        }
    }
}

impl IamAllowlist {
    /// Parses comma-separated entries, e.g. from `FLAKEFLEET_WRITERS`.
    pub fn parse_list(raw: &str) -> Result<Vec<Principal>, String> {
        raw.split(',').map(str::trim).filter(|e| !e.is_empty()).map(Principal::parse).collect()
    }

    pub fn may_write(&self, caller: &IamIdentity) -> bool {
        self.writers.iter().any(|p| p.matches(caller))
    }

    /// Writers may read, too.
    pub fn may_read(&self, caller: &IamIdentity) -> bool {
        self.may_write(caller) || self.readers.iter().any(|p| p.matches(caller))
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn arn_account(arn: &str) -> Option<&str> {
    arn.split(':').nth(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(arn: &str) -> IamIdentity {
        IamIdentity { account_id: arn_account(arn).unwrap_or_default().into(), user_arn: arn.into() }
    }

    #[test]
    fn roles_match_any_session_of_that_role_only() {
        let role = Principal::parse("arn:aws:iam::111122223333:role/ci/github-deploy").unwrap();
        assert!(role.matches(&caller("arn:aws:sts::111122223333:assumed-role/github-deploy/run-42")));
        assert!(!role.matches(&caller("arn:aws:sts::111122223333:assumed-role/github-deploy-2/run-42")));
        assert!(!role.matches(&caller("arn:aws:sts::444455556666:assumed-role/github-deploy/run-42")));
        assert!(!role.matches(&caller("arn:aws-cn:sts::111122223333:assumed-role/github-deploy/run-42")));
        assert!(!role.matches(&caller("arn:aws:sts::111122223333:assumed-role/github-deploy/x/y")));
        assert!(!role.matches(&caller("arn:aws:iam::111122223333:user/github-deploy")));
    }

    #[test]
    fn accounts_and_users() {
        let account = Principal::parse("111122223333").unwrap();
        assert_eq!(Principal::parse("arn:aws:iam::111122223333:root").unwrap(), account);
        assert!(account.matches(&caller("arn:aws:iam::111122223333:user/alice")));
        assert!(account.matches(&caller("arn:aws:sts::111122223333:assumed-role/any/one")));
        assert!(!account.matches(&caller("arn:aws:iam::444455556666:user/alice")));
        // The signer's account must agree with its ARN.
        let forged =
            IamIdentity { account_id: "111122223333".into(), user_arn: "arn:aws:iam::444455556666:user/alice".into() };
        assert!(!account.matches(&forged));
        let user = Principal::parse("arn:aws:iam::111122223333:user/ops/alice").unwrap();
        assert!(user.matches(&caller("arn:aws:iam::111122223333:user/ops/alice")));
        assert!(!user.matches(&caller("arn:aws:iam::111122223333:user/ops/alice2")));
    }

    #[test]
    fn wildcards_and_other_arns_are_refused() {
        for bad in [
            "*",
            "arn:aws:iam::111122223333:role/*",
            "arn:aws:iam::*:role/deploy",
            "arn:aws:sts::111122223333:assumed-role/deploy/x",
            "arn:aws:iam::111122223333:group/ops",
            "arn:aws:iam::11112222333:role/deploy",
            "arn:aws:iam::111122223333:role/",
            "11112222333a",
        ] {
            assert!(Principal::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn writers_read_but_readers_do_not_write() {
        let list = IamAllowlist {
            readers: IamAllowlist::parse_list("arn:aws:iam::111122223333:role/viewer").unwrap(),
            writers: IamAllowlist::parse_list(" arn:aws:iam::111122223333:role/deploy ,").unwrap(),
        };
        let viewer = caller("arn:aws:sts::111122223333:assumed-role/viewer/s");
        let deployer = caller("arn:aws:sts::111122223333:assumed-role/deploy/s");
        assert!(list.may_read(&viewer) && !list.may_write(&viewer));
        assert!(list.may_read(&deployer) && list.may_write(&deployer));
        assert!(!IamAllowlist::default().may_read(&deployer));
    }
}
