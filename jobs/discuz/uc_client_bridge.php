<?php
// Bridge from rq-gevent's sync_discuz_user job to the site's own uc_client.
// Reads one JSON request on stdin, writes one JSON answer on stdout. Nothing arrives through argv,
// so no secret is visible in the process list and nothing is ever parsed by a shell.
// Request: {"action": "get_user"|"register", "config": <php file defining UC_*>, "uc_client": <dir>,
//           "username", "password", "email", "regip"} (UTF-8). Answer: {"result": ...} or {"error", "message"}.

function answer($payload, $status = 0) {
    fwrite(STDOUT, json_encode($payload));
    exit($status);
}

function to_site($text, $charset) {
    if ($charset === 'utf-8') {
        return $text;
    }
    $converted = @iconv('UTF-8', $charset, $text);
    if ($converted === false) {
        answer(array('error' => 'charset', 'message' => "input cannot be written in the forum charset $charset"), 1);
    }
    return $converted;
}

function from_site($text, $charset) {
    return $charset === 'utf-8' ? $text : iconv($charset, 'UTF-8//IGNORE', $text);
}

$request = json_decode(stream_get_contents(STDIN), true);
if (!is_array($request) || !isset($request['action'], $request['config'], $request['uc_client'])) {
    answer(array('error' => 'request', 'message' => 'malformed request'), 1);
}
if (!is_file($request['config']) || !is_file($request['uc_client'] . '/client.php')) {
    answer(array('error' => 'config', 'message' => 'DISCUZ_PHP_CONFIG or DISCUZ_PHP_UC_CLIENT does not exist'), 1);
}
require_once $request['config'];
require_once $request['uc_client'] . '/client.php';
if (!function_exists('uc_user_register') || !function_exists('uc_get_user')) {
    answer(array('error' => 'uc_client', 'message' => 'client.php does not define uc_user_register/uc_get_user'), 1);
}
$charset = strtolower(defined('UC_CHARSET') ? UC_CHARSET : 'utf-8');
$username = to_site($request['username'], $charset);

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
answer(array('error' => 'request', 'message' => 'unknown action'), 1);
