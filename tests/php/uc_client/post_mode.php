<?php
// uc_client's post mode, for client.php: UCenter's HTTP API.  Like the real one: UC_API_FUNC names the
// call, which answers UCenter's raw text (null when UCenter cannot be reached); uc_user_register passes
// that text on as it is; uc_get_user parses it with uc_unserialize.
define('UC_API_FUNC', 'uc_test_call');

function uc_test_authcode_encode($plain, $key) {
    $k = md5($key);
    $ka = md5(substr($k, 0, 16));
    $kb = md5(substr($k, 16, 16));
    $iv = substr(md5(microtime() . mt_rand()), -4);
    $cryptkey = $ka . md5($ka . $iv);
    $data = sprintf('%010d', 0) . substr(md5($plain . $kb), 0, 16) . $plain;
    $box = range(0, 255);
    $j = 0;
    for ($i = 0; $i < 256; $i++) {
        $j = ($j + $box[$i] + ord($cryptkey[$i % 64])) % 256;
        list($box[$i], $box[$j]) = array($box[$j], $box[$i]);
    }
    $out = '';
    $a = $j = 0;
    for ($i = 0, $n = strlen($data); $i < $n; $i++) {
        $a = ($a + 1) % 256;
        $j = ($j + $box[$a]) % 256;
        list($box[$a], $box[$j]) = array($box[$j], $box[$a]);
        $out .= chr(ord($data[$i]) ^ $box[($box[$a] + $box[$j]) % 256]);
    }
    return $iv . str_replace('=', '', base64_encode($out));
}

function uc_test_call($module, $action, $args) {
    $agent = 'uc_client test stand-in';
    $plain = http_build_query($args) . "&m=$module&a=$action&appid=" . UC_APPID
        . '&agent=' . md5($agent) . '&time=' . time();
    $body = http_build_query(array(
        'm' => $module, 'a' => $action, 'inajax' => 2, 'release' => '20240520',
        'input' => uc_test_authcode_encode($plain, UC_KEY), 'appid' => UC_APPID,
    ));
    $context = stream_context_create(array('http' => array(
        'method' => 'POST', 'header' => "Content-Type: application/x-www-form-urlencoded\r\nUser-Agent: $agent\r\n",
        'content' => $body, 'timeout' => 10,
    )));
    $answer = @file_get_contents(UC_API . '/index.php', false, $context);
    return $answer === false ? null : $answer;  // as the real one's curl branch (its fopen one gives '')
}

function uc_unserialize($answer) {
    preg_match_all('/<item id="(\d)"><!\[CDATA\[(.*?)\]\]><\/item>/s', $answer, $items);
    return $items[1] ? array_combine($items[1], $items[2]) : array();
}

function uc_user_register($username, $password, $email, $questionid = '', $answer = '', $regip = '') {
    $pause = getenv('UC_TEST_PAUSE_FILE');
    for ($waited = 0; $pause && file_exists($pause) && $waited < 100; $waited++) {
        usleep(100000);
    }
    $args = compact('username', 'password', 'email', 'questionid', 'answer', 'regip');
    return uc_test_call('user', 'register', $args);
}

function uc_user_login($username, $password) {
    return array((int)uc_test_call('user', 'login', array('username' => $username, 'password' => $password)));
}

function uc_get_user($username, $isuid = 0) {
    return uc_unserialize(uc_test_call('user', 'get_user', array('username' => $username, 'isuid' => $isuid)));
}
