<?php
// A stand-in for UCenter's member code, written for these tests from the behaviour described in
// docs/jobs.md and shared notes (no Discuz! code): the parts sync_discuz_user meets, on a real MariaDB.
// - Every argument passes addslashes(stripslashes(x)), and is put into SQL text quoted, as UCenter does.
// - The connection runs with sql_mode='' (MySQL cuts what is too long, as in UCenter).
// - A failed query prints UCenter's halt() page and ends the script with exit status 0.
// - Check-then-insert, with no lock: two registrations at once can both pass the check.
// - Logins: 1.6 takes 32 word characters for an md5; 1.7 verifies a salted md5 only with a 6-character salt.
// Settings: UC_DBHOST, UC_DBUSER, UC_DBPW, UC_DBNAME, UC_DBTABLEPRE, UC_DBCHARSET, UC_CHARSET, and
// UCT_VERSION ('1.6' or '1.7'). Test hook: UC_TEST_PAUSE_FILE (environment), waited on between the
// checks and the insert, up to 10 s, so a test can race a registration (<file>.reached appears then).

function uct_escape($value) {
    return is_array($value) ? array_map('uct_escape', $value) : addslashes(stripslashes((string)$value));
}

function uct_db() {
    static $link = null;
    if ($link === null) {
        mysqli_report(MYSQLI_REPORT_OFF);
        // As uc_client's mysqli class under PHP 8: a failed connect goes unnoticed, and the first use
        // of the dead link throws an Error (silent, with error reporting off).
        $link = @new mysqli(UC_DBHOST, UC_DBUSER, UC_DBPW, UC_DBNAME);
        $link->set_charset(UC_DBCHARSET);
        $link->query("SET sql_mode=''");
    }
    return $link;
}

function uct_halt($message, $sql, $error, $errno) {
    $page = "<b>UCenter info:</b> $message<br />";
    if ($sql) {
        $page .= '<b>SQL:</b>' . htmlspecialchars($sql) . '<br />';
    }
    $page .= "<b>Error:</b>$error<br /><b>Errno:</b>$errno<br />";
    exit(str_replace(UC_DBTABLEPRE, '[Table]', $page));
}

function uct_query($sql) {
    $db = uct_db();
    $result = $db->query($sql);
    if ($result === false) {
        uct_halt('MySQL Query Error', $sql, $db->error, $db->errno);
    }
    return $result;
}

function uct_first($sql) {
    $row = uct_query($sql)->fetch_assoc();
    return $row ? $row : null;
}

function uct_length($text) {
    if (strtolower(UC_CHARSET) !== 'utf-8') {
        return strlen($text);
    }
    $count = 0;
    for ($i = 0, $n = strlen($text); $i < $n; $i++) {
        $byte = ord($text[$i]);
        if ($byte > 127) {
            $count++;
            $i += $byte >= 240 ? 3 : ($byte >= 224 ? 2 : 1);
        }
        $count++;
    }
    return $count;
}

// $username arrives escaped (uct_escape), as UCenter's code holds it.
function uct_username_ok($username) {
    $measured = addslashes(trim(stripslashes($username)));
    $length = uct_length($measured);
    return $length >= 3 && $length <= 15 && !preg_match('/\s|[%,*"<>&()\']|^guest/i', stripslashes($username));
}

function uct_table($name) {
    return UC_DBTABLEPRE . $name;
}

function uct_register($username, $password, $email, $questionid = '', $answer = '', $regip = '') {
    list($username, $password, $email, $regip) = uct_escape(array($username, $password, $email, $regip));
    if (!uct_username_ok($username)) {
        return -1;
    }
    if (uct_first("SELECT uid FROM " . uct_table('members') . " WHERE username='$username'")) {
        return -3;
    }
    if (!preg_match('/^[A-Za-z0-9\-_.+]+@[A-Za-z0-9\-]+[.][A-Za-z0-9\-.]+$/', $email)) {
        return -4;
    }
    $doublee = uct_first("SELECT v FROM " . uct_table('settings') . " WHERE k='doublee'");
    if ((!$doublee || !$doublee['v']) && uct_first("SELECT uid FROM " . uct_table('members') . " WHERE email='$email'")) {
        return -6;
    }
    $pause = getenv('UC_TEST_PAUSE_FILE');
    $pause && file_exists($pause) && touch($pause . '.reached');
    for ($waited = 0; $pause && file_exists($pause) && $waited < 100; $waited++) {
        usleep(100000);
    }
    if (UCT_VERSION === '1.6') {
        $salt = substr(md5(uniqid('', true)), 0, 6);
        $hash = md5(md5($password) . $salt);
    } else {
        $salt = '';
        $hash = password_hash($password, PASSWORD_BCRYPT);
    }
    uct_query("INSERT INTO " . uct_table('members') . " SET username='$username', password='$hash', email='$email',"
        . " regip='$regip', regdate='" . time() . "', salt='$salt'");
    $uid = uct_db()->insert_id;
    uct_query("INSERT INTO " . uct_table('memberfields') . " SET uid='$uid', blacklist=''");
    return $uid;
}

function uct_get_user($username) {
    $username = uct_escape($username);
    $row = uct_first("SELECT uid, username, email FROM " . uct_table('members') . " WHERE username='$username'");
    return $row ? array($row['uid'], $row['username'], $row['email']) : 0;
}

// uid > 0, -1 no such member, -2 wrong password.
function uct_login($username, $password) {
    list($username, $password) = uct_escape(array($username, $password));
    $row = uct_first("SELECT uid, password, salt FROM " . uct_table('members') . " WHERE username='$username'");
    if (!$row) {
        return -1;
    }
    if (UCT_VERSION === '1.6') {
        $md5 = preg_match('/^\w{32}$/', $password) ? $password : md5($password);
        return md5($md5 . $row['salt']) === $row['password'] ? (int)$row['uid'] : -2;
    }
    if ($row['salt'] === '') {
        return password_verify($password, $row['password']) ? (int)$row['uid'] : -2;
    }
    if (strlen($row['salt']) === 6) {
        return md5(md5($password) . $row['salt']) === $row['password'] ? (int)$row['uid'] : -2;
    }
    return -2;
}
