//! User lists such as `authorized_flush_users` and `authorized_mailq_users`: user names, or
//! `static:anyone`. The mail system's own user and root are always allowed.

/// A compiled user list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserList {
    anyone: bool,
    names: Vec<String>,
}

impl UserList {
    pub fn new(items: &[String]) -> UserList {
        UserList { anyone: items.iter().any(|u| u == "static:anyone"), names: items.to_vec() }
    }

    /// The name of `uid`, or `unknown`.
    pub fn user_name(uid: u32) -> String {
        nix::unistd::User::from_uid(uid.into()).ok().flatten().map_or_else(|| "unknown".to_string(), |u| u.name)
    }

    /// May `uid` do it? `own_uid` is the service's own user.
    pub fn allows(&self, uid: u32, own_uid: u32) -> bool {
        uid == 0 || uid == own_uid || self.anyone || self.names.contains(&UserList::user_name(uid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        let l = UserList::new(&["root".into()]);
        assert!(l.allows(0, 1000));
        assert!(l.allows(1000, 1000));
        assert!(!l.allows(4242, 1000));
        assert!(UserList::new(&["static:anyone".into()]).allows(4242, 1000));
    }
}
