<?php
// Bridge from rq-gevent's sync_discuz_user job to the site's own uc_client.
// Reads one JSON request on stdin, writes one JSON answer on stdout. Nothing arrives through argv,
// so no secret is visible in the process list and nothing is ever parsed by a shell.
// Request: {"action": "get_user"|"register", "config": <php file defining UC_*>, "uc_client": <dir>,
//           "username", "password", "email", "regip", "diagnose": bool} (UTF-8).
// Answer: {"result": ...}, or {"error": <kind>, ...} with only codes, class names, files and lines:
// uc_client's own output (its halt() page quotes the SQL, with the member's data) is never passed on.
//   "database": {"errno": N}  a MySQL query or connection failed: uc_client's (its halt() page, or
//               mysqli) or, with "where": "ucenter", uc_server's (in post mode, its halt() page as the answer)
//   "php": {"kind", "file", "line"}  a fatal error or an uncaught exception stopped uc_client
//   "silent": {"printed": N}  uc_client ended the script without an answer, printing N bytes
//   post mode (uc_client calling UCenter's HTTP API), when UCenter's answer is not a result:
//   "unreachable" (uc_client got nothing), "html" (an error page), "refusal": {"refusal"} (one of
//   UCenter's own refusals, from the list below), "not_a_result": {"bytes": N}
// "diagnose": errors are displayed on stderr and uc_client's output is copied there, for a person
// running the bridge by hand (python -m jobs.discuz.uc_client_php --diagnose); never set by the job.

$answered = false;
$diagnose = false;

function answer($payload) {
    global $answered, $diagnose;
    $answered = true;
    $printed = '';
    while (ob_get_level() > 0) {
        $printed = ob_get_clean() . $printed;
    }
    if ($diagnose && $printed !== '') {
        fwrite(STDERR, "uc_client printed:\n" . $printed . "\n");
    }
    fwrite(STDOUT, json_encode($payload));
    ob_start(function ($late) { return ''; });  // uc_client's own shutdown hooks print nothing after it
    exit(isset($payload['result']) ? 0 : 1);
}

// UCenter's own refusals of a request it will not serve (uc_server's index.php and control/*.php).
$ucenter_refusals = array('Invalid input', 'Access denied for agent changed', 'Authorization has expired',
    'Access denied for operation changed', 'Access denied for application', 'Invalid operation', 'Access denied');

// What UCenter answered in post mode, when it is not a result: named, never passed on.
function not_a_result($text) {
    global $ucenter_refusals;
    $text = trim((string)$text);
    if ($text === '') {
        answer(array('error' => 'unreachable'));
    }
    if (preg_match('~<b>Errno:</b>\s*(\d+)\s*<br />$~', $text, $found)) {
        answer(array('error' => 'database', 'errno' => (int)$found[1], 'where' => 'ucenter'));
    }
    if (in_array($text, $ucenter_refusals, true)) {
        answer(array('error' => 'refusal', 'refusal' => $text));
    }
    if (preg_match('~^<(!doctype|html)~i', $text)) {
        answer(array('error' => 'html'));
    }
    answer(array('error' => 'not_a_result', 'bytes' => strlen($text)));
}

// UCenter's raw answer where uc_client lets us have it (UC_API_FUNC: post or mysql mode), so that in
// post mode an unreachable UCenter or an error page is not taken for "no such member".
function uc_call($action, $args) {
    if (defined('UC_API_FUNC') && function_exists(UC_API_FUNC)) {
        return array(true, call_user_func(UC_API_FUNC, 'user', $action, $args));
    }
    return array(false, null);
}

// Post mode: uc_client calls UCenter over HTTP (its UC_API_FUNC is not the mysql one).
function post_mode() {
    return defined('UC_API_FUNC') && UC_API_FUNC !== 'uc_api_mysql';
}

function php_failure($kind, $file, $line) {
    $connect_errno = function_exists('mysqli_connect_errno') ? mysqli_connect_errno() : 0;
    if ($connect_errno) {  // uc_client carries on after a failed connect and dies on the dead link
        answer(array('error' => 'database', 'errno' => $connect_errno));
    }
    answer(array('error' => 'php', 'kind' => $kind, 'file' => $file, 'line' => $line));
}

function on_exception($e) {
    global $diagnose;
    if ($diagnose) {
        fwrite(STDERR, (string)$e . "\n");
    }
    if ($e instanceof mysqli_sql_exception) {
        answer(array('error' => 'database', 'errno' => (int)$e->getCode()));
    }
    php_failure(get_class($e), $e->getFile(), $e->getLine());
}

function on_shutdown() {
    global $answered, $diagnose;
    if ($answered) {
        return;
    }
    $printed = '';
    while (ob_get_level() > 0) {
        $printed = ob_get_clean() . $printed;
    }
    if ($diagnose && $printed !== '') {
        fwrite(STDERR, "uc_client printed:\n" . $printed . "\n");
    }
    // uc_client's halt(): "<b>UCenter info:</b> ...<b>Errno:</b>1062<br />", then exit.
    if (preg_match('~<b>Errno:</b>\s*(\d+)\s*<br />\s*$~', $printed, $found)) {
        answer(array('error' => 'database', 'errno' => (int)$found[1]));
    }
    $last = error_get_last();
    if ($last !== null && ($last['type'] & (E_ERROR | E_PARSE | E_CORE_ERROR | E_COMPILE_ERROR | E_USER_ERROR))) {
        if ($diagnose) {
            fwrite(STDERR, "PHP error: " . $last['message'] . " in " . $last['file'] . ":" . $last['line'] . "\n");
        }
        php_failure('fatal error', $last['file'], $last['line']);
    }
    answer(array('error' => 'silent', 'printed' => strlen($printed)));
}

function to_site($text, $charset) {
    if ($charset === 'utf-8') {
        return $text;
    }
    $converted = @iconv('UTF-8', $charset, $text);
    if ($converted === false) {
        answer(array('error' => 'charset'));
    }
    return $converted;
}

function from_site($text, $charset) {
    return $charset === 'utf-8' ? $text : iconv($charset, 'UTF-8//IGNORE', $text);
}

set_exception_handler('on_exception');
// A redirected POST arrives as a GET without its body (PHP's http wrapper follows it): not followed.
stream_context_set_default(array('http' => array('follow_location' => 0)));
register_shutdown_function('on_shutdown');
ob_start();

$request = json_decode(stream_get_contents(STDIN), true);
if (!is_array($request) || !isset($request['action'], $request['config'], $request['uc_client'])) {
    answer(array('error' => 'request'));
}
$diagnose = !empty($request['diagnose']);
if ($diagnose) {
    ini_set('display_errors', 'stderr');
}
if (!is_file($request['config']) || !is_file($request['uc_client'] . '/client.php')) {
    answer(array('error' => 'config'));
}
// Discuz! defines this itself (discuz_application.php); X3.4's uc_client calls get_magic_quotes_gpc(),
// gone since PHP 8, unless it is defined.
if (!defined('MAGIC_QUOTES_GPC')) {
    define('MAGIC_QUOTES_GPC', false);
}
require_once $request['config'];
require_once $request['uc_client'] . '/client.php';
if ($diagnose) {
    error_reporting(E_ALL);  // client.php turns reporting off
}
if (!function_exists('uc_user_register') || !function_exists('uc_get_user')) {
    answer(array('error' => 'uc_client'));
}
$charset = strtolower(defined('UC_CHARSET') ? UC_CHARSET : 'utf-8');
// As Discuz! calls uc_client: the username escaped, which uc_client strips once.
$username = addslashes(to_site($request['username'], $charset));

if ($request['action'] === 'get_user') {
    list($raw_known, $raw) = uc_call('get_user', array('username' => $username, 'isuid' => 0));
    if (!$raw_known) {
        $user = uc_get_user($username);
    } elseif (post_mode()) {  // UCenter's answer, "0" or an XML document; with curl, null on an HTTP error
        if (!is_string($raw)) {
            not_a_result('');
        }
        if (trim($raw) === '0') {
            answer(array('result' => 0));
        }
        $user = function_exists('uc_unserialize') ? uc_unserialize($raw) : null;
        if (!is_array($user) || !isset($user[0], $user[1], $user[2]) || (int)$user[0] <= 0) {
            not_a_result($raw);
        }
    } else {
        $user = $raw;
    }
    if (!is_array($user)) {
        answer(array('result' => 0));
    }
    answer(array('result' => array((int)$user[0], from_site($user[1], $charset), from_site($user[2], $charset))));
}
if ($request['action'] === 'register') {
    $uid = uc_user_register(
        $username,
        to_site($request['password'], $charset),
        to_site($request['email'], $charset),
        '',
        '',
        isset($request['regip']) ? $request['regip'] : ''
    );
    if (is_int($uid) || (is_string($uid) && preg_match('/^\s*-?\d+\s*$/', $uid))) {
        answer(array('result' => (int)$uid));
    }
    not_a_result($uid);  // post mode: UCenter's answer was not a number
}
answer(array('error' => 'request'));
