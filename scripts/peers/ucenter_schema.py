"""Our own DDL for UCenter's member tables, from the column list in shared/notes/discuz-ucenter.md."""

from __future__ import annotations


def member_tables(version: str, prefix: str = "pre_ucenter_", charset: str = "utf8mb4") -> list[str]:
    wide = version == "1.7"
    password = "varchar(255)" if wide else "char(32)"
    email = "varchar(255)" if wide else "char(32)"
    salt = "varchar(20)" if wide else "char(6)"
    regip = "varchar(45)" if wide else "char(15)"
    mobile = "secmobicc varchar(3) NOT NULL DEFAULT '', secmobile varchar(12) NOT NULL DEFAULT ''," if wide else ""
    return [
        f"DROP TABLE IF EXISTS {prefix}members, {prefix}memberfields",
        f"""CREATE TABLE {prefix}members (
            uid mediumint unsigned NOT NULL AUTO_INCREMENT,
            username char(15) NOT NULL DEFAULT '',
            password {password} NOT NULL DEFAULT '',
            email {email} NOT NULL DEFAULT '',
            myid char(30) NOT NULL DEFAULT '',
            myidkey char(16) NOT NULL DEFAULT '',
            regip {regip} NOT NULL DEFAULT '',
            regdate int unsigned NOT NULL DEFAULT 0,
            lastloginip int NOT NULL DEFAULT 0,
            lastlogintime int unsigned NOT NULL DEFAULT 0,
            salt {salt} NOT NULL,
            secques char(8) NOT NULL DEFAULT '',
            {mobile}
            PRIMARY KEY (uid),
            UNIQUE KEY username (username),
            KEY email (email)
        ) ENGINE=InnoDB DEFAULT CHARSET={charset}""",
        f"""CREATE TABLE {prefix}memberfields (
            uid mediumint unsigned NOT NULL,
            blacklist text NOT NULL,
            PRIMARY KEY (uid)
        ) ENGINE=InnoDB DEFAULT CHARSET={charset}""",
    ]
