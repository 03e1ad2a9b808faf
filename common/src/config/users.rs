//! User lists such as `authorized_flush_users` and `authorized_mailq_users`: user names,
//! `static:anyone`, or `type:table` lookup tables of user names (Postfix `match_list`). The mail
//! system's own user and root are always allowed.

/// The `mail_owner` account when it exists and is not root: who the daemons run as under a
/// root master, and who root's own programs (postsuper) become before they touch the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailOwner {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl MailOwner {
    /// `Ok(None)` when the account does not exist or is root.
    pub fn from_params(p: &super::Params) -> Result<Option<MailOwner>, super::ParamError> {
        let name = p.get("mail_owner")?;
        let user = nix::unistd::User::from_name(&name).ok().flatten();
        Ok(user.filter(|u| !u.uid.is_root()).map(|u| MailOwner { name, uid: u.uid.as_raw(), gid: u.gid.as_raw() }))
    }

    /// Become this user for good (root only): groups, group, then user.
    pub fn become_user(&self) -> nix::Result<()> {
        let gid = nix::unistd::Gid::from_raw(self.gid);
        nix::unistd::setgroups(&[gid])?;
        nix::unistd::setgid(gid)?;
        nix::unistd::setuid(nix::unistd::Uid::from_raw(self.uid))
    }

    /// Every group of this user (for permission checks made on its behalf).
    pub fn groups(&self) -> Vec<u32> {
        std::ffi::CString::new(self.name.as_str())
            .ok()
            .and_then(|n| nix::unistd::getgrouplist(&n, nix::unistd::Gid::from_raw(self.gid)).ok())
            .map_or_else(|| vec![self.gid], |g| g.iter().map(|g| g.as_raw()).collect())
    }
}

/// A compiled user list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserList {
    anyone: bool,
    names: Vec<String>,
    tables: Vec<super::table::Table>,
}

impl UserList {
    /// Compile `items`; table names are relative to `config_dir`. A table that cannot be opened
    /// is logged and matches nobody (`postfix check` refuses such a configuration before start).
    pub fn new(items: &[String], config_dir: &std::path::Path) -> UserList {
        let mut list = UserList { anyone: items.iter().any(|u| u == "static:anyone"), ..UserList::default() };
        for item in items.iter().filter(|u| *u != "static:anyone") {
            if super::table::is_table_spec(item) {
                match super::table::Table::open(item, config_dir) {
                    Ok(t) => list.tables.push(t),
                    Err(e) => crate::log_warning!("{e}"),
                }
            } else {
                list.names.push(item.clone());
            }
        }
        list
    }

    /// The name of `uid`, or `unknown`.
    pub fn user_name(uid: u32) -> String {
        nix::unistd::User::from_uid(uid.into()).ok().flatten().map_or_else(|| "unknown".to_string(), |u| u.name)
    }

    /// May `uid` do it? `own_uid` is the service's own user.
    pub fn allows(&self, uid: u32, own_uid: u32) -> bool {
        if uid == 0 || uid == own_uid || self.anyone {
            return true;
        }
        let name = UserList::user_name(uid);
        self.names.contains(&name)
            || self.tables.iter().any(|t| {
                t.lookup(&name)
                    .unwrap_or_else(|e| {
                        crate::log_warning!("{e}");
                        None
                    })
                    .is_some()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        let l = UserList::new(&["root".into()], std::path::Path::new("/"));
        assert!(l.allows(0, 1000));
        assert!(l.allows(1000, 1000));
        assert!(!l.allows(4242, 1000));
        assert!(UserList::new(&["static:anyone".into()], std::path::Path::new("/")).allows(4242, 1000));
        // A table of user names; the name of uid 0 is always allowed anyway, so ask for nobody's.
        let nobody = nix::unistd::User::from_name("nobody").ok().flatten().map(|u| u.uid.as_raw());
        if let Some(uid) = nobody {
            let t = UserList::new(&["inline:{nobody=1}".into()], std::path::Path::new("/"));
            assert!(t.allows(uid, 1000));
            assert!(!UserList::new(&["inline:{other=1}".into()], std::path::Path::new("/")).allows(uid, 1000));
        }
    }
}
