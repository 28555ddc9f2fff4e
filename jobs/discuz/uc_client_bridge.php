<?php
// Bridge from rq-gevent's sync_discuz_user job to the site's own uc_client.
// Reads one JSON request on stdin, writes one JSON answer on stdout. Nothing arrives through argv,
// so no secret is visible in the process list and nothing is ever parsed by a shell.
// Request: {"action": "get_user"|"register", "config": <php file defining UC_*>, "uc_client": <dir>,
//           "username", "password", "email", "regip", "diagnose": bool} (UTF-8).
// Answer: {"result": ...}, or {"error": <kind>, ...} with only codes, class names, files and lines:
// uc_client's own output (its halt() page quotes the SQL, with the member's data) is never passed on.
//   "database": {"errno": N}  uc_client's MySQL query or connection failed (its halt() page, or mysqli)
//   "php": {"kind", "file", "line"}  a fatal error or an uncaught exception stopped uc_client
//   "silent": {"printed": N}  uc_client ended the script without an answer, printing N bytes
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
    exit(isset($payload['result']) ? 0 : 1);
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
    $user = uc_get_user($username);
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
    answer(array('result' => (int)$uid));
}
answer(array('error' => 'request'));
