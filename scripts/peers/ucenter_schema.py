"""Our own DDL for UCenter's member tables, from the column list in shared/notes/discuz-ucenter.md, and
for the forum's member tables as far as activation (jobs/discuz/activation.py) writes them."""

from __future__ import annotations


def member_tables(
    version: str, prefix: str = "pre_ucenter_", charset: str = "utf8mb4", doublee: str | None = "0"
) -> list[str]:
    """The member tables, and the settings table with its ``doublee`` row (as UCenter's installer
    writes it: ``0``, one account per e-mail); ``doublee=None`` leaves the row out."""
    wide = version == "1.7"
    password = "varchar(255)" if wide else "char(32)"
    email = "varchar(255)" if wide else "char(32)"
    salt = "varchar(20)" if wide else "char(6)"
    regip = "varchar(45)" if wide else "char(15)"
    mobile = "secmobicc varchar(3) NOT NULL DEFAULT '', secmobile varchar(12) NOT NULL DEFAULT ''," if wide else ""
    return [
        f"DROP TABLE IF EXISTS {prefix}members, {prefix}memberfields, {prefix}settings",
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
        f"""CREATE TABLE {prefix}settings (
            k varchar(32) NOT NULL DEFAULT '',
            v text NOT NULL,
            PRIMARY KEY (k)
        ) ENGINE=InnoDB DEFAULT CHARSET={charset}""",
    ] + ([f"INSERT INTO {prefix}settings (k, v) VALUES ('doublee', '{int(doublee)}')"] if doublee is not None else [])


def forum_member_tables(prefix: str = "pre_", charset: str = "utf8mb4", regverify: str = "0") -> list[str]:
    """Discuz!'s member tables, with the columns activation writes and a few it leaves to their defaults
    (``bio``: NOT NULL without a default, as in Discuz!), and the settings activation reads."""
    tables = {
        "common_member": """uid mediumint unsigned NOT NULL, email char(40) NOT NULL DEFAULT '',
            username char(15) NOT NULL DEFAULT '', password char(32) NOT NULL DEFAULT '',
            status tinyint NOT NULL DEFAULT 0, emailstatus tinyint NOT NULL DEFAULT 0,
            adminid tinyint NOT NULL DEFAULT 0, groupid smallint unsigned NOT NULL DEFAULT 0,
            regdate int unsigned NOT NULL DEFAULT 0, credits int NOT NULL DEFAULT 0,
            timeoffset char(4) NOT NULL DEFAULT '', PRIMARY KEY (uid), UNIQUE KEY username (username)""",
        "common_member_status": """uid mediumint unsigned NOT NULL, regip char(15) NOT NULL DEFAULT '',
            lastip char(15) NOT NULL DEFAULT '', lastvisit int unsigned NOT NULL DEFAULT 0,
            lastactivity int unsigned NOT NULL DEFAULT 0, lastpost int unsigned NOT NULL DEFAULT 0,
            PRIMARY KEY (uid)""",
        "common_member_count": "uid mediumint unsigned NOT NULL, "
        + ", ".join(f"extcredits{index} int NOT NULL DEFAULT 0" for index in range(1, 9))
        + ", posts mediumint unsigned NOT NULL DEFAULT 0, PRIMARY KEY (uid)",
        "common_member_profile": "uid mediumint unsigned NOT NULL, realname varchar(255) NOT NULL DEFAULT '', "
        "bio text NOT NULL, PRIMARY KEY (uid)",
        "common_member_field_forum": "uid mediumint unsigned NOT NULL, medals text NOT NULL, PRIMARY KEY (uid)",
        "common_member_field_home": "uid mediumint unsigned NOT NULL, spacename varchar(255) NOT NULL DEFAULT '', "
        "PRIMARY KEY (uid)",
        "common_setting": "skey varchar(255) NOT NULL DEFAULT '', svalue text NOT NULL, PRIMARY KEY (skey)",
        "common_usergroup": """groupid smallint unsigned NOT NULL, type varchar(10) NOT NULL DEFAULT 'member',
            creditshigher int NOT NULL DEFAULT 0, creditslower int NOT NULL DEFAULT 0, PRIMARY KEY (groupid)""",
    }
    statements = [f"DROP TABLE IF EXISTS {', '.join(prefix + name for name in tables)}"]
    statements += [
        f"CREATE TABLE {prefix}{name} ({body}) ENGINE=InnoDB DEFAULT CHARSET={charset}" for name, body in tables.items()
    ]
    settings = {"regverify": regverify, "initcredits": "0,5,0,0,0,0,0,0,0"}
    statements += [
        f"INSERT INTO {prefix}common_setting (skey, svalue) VALUES ('{key}', '{value}')"
        for key, value in settings.items()
    ]
    # an administrators' group (no credit range), then member groups by credits, as Discuz! installs them
    statements.append(
        f"INSERT INTO {prefix}common_usergroup (groupid, type, creditshigher, creditslower) VALUES"
        " (1, 'system', 0, 0), (10, 'member', 0, 50), (11, 'member', 50, 200), (12, 'member', 200, 500)"
    )
    return statements
