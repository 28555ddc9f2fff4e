<?php
// A stand-in for a site's uc_client, written for these tests from the protocol notes (no Discuz! code).
// Post mode (the default): uc_user_register(), uc_get_user() and uc_user_login() over UCenter's HTTP API,
// with its own PHP authcode, so the Python side is checked against an independent implementation of
// the cipher.  UC_CONNECT 'mysql': the same calls straight on the database, through ../ucenter/ucenter.php,
// as uc_client's mysql mode runs UCenter's own code in the calling process.
// Like the real one, it turns error reporting off (so a fatal error is silent) and ends the script
// with UCenter's halt() page on a failed query.
// Test hook: if UC_TEST_PAUSE_FILE exists, wait (up to 10 s) until it is removed before registering,
// so a test can read the process list while this PHP process holds the password.

if (!defined('UC_API')) {
    exit('Access denied');
}
error_reporting(0);

require __DIR__ . (defined('UC_CONNECT') && UC_CONNECT === 'mysql' ? '/mysql_mode.php' : '/post_mode.php');
