<?php
// A stand-in for uc_server's index.php (run with `php -S`), written for these tests from the protocol
// notes (no Discuz! code): decodes the authcode input with UC_KEY, then registers, looks up or logs in
// through ../ucenter/ucenter.php on a real MariaDB.  A failed query answers UCenter's halt() page with
// HTTP 200, as uc_server does.  Settings come from the environment (UC_KEY, UC_APPID, UCT_*), never argv.

foreach (array('UC_KEY', 'UC_APPID', 'UC_DBHOST', 'UC_DBUSER', 'UC_DBPW', 'UC_DBNAME', 'UC_DBTABLEPRE',
               'UC_DBCHARSET', 'UC_CHARSET', 'UCT_VERSION') as $name) {
    define($name, getenv($name));
}
require __DIR__ . '/../ucenter/ucenter.php';

function uct_authcode_decode($token, $key) {
    $k = md5($key);
    $ka = md5(substr($k, 0, 16));
    $kb = md5(substr($k, 16, 16));
    $cryptkey = $ka . md5($ka . substr($token, 0, 4));
    $body = substr($token, 4);
    $data = base64_decode($body . str_repeat('=', (4 - strlen($body) % 4) % 4));
    $box = range(0, 255);
    for ($i = 0, $j = 0; $i < 256; $i++) {
        $j = ($j + $box[$i] + ord($cryptkey[$i % 64])) % 256;
        list($box[$i], $box[$j]) = array($box[$j], $box[$i]);
    }
    $out = '';
    for ($a = $j = $i = 0, $n = strlen($data); $i < $n; $i++) {
        $a = ($a + 1) % 256;
        $j = ($j + $box[$a]) % 256;
        list($box[$a], $box[$j]) = array($box[$j], $box[$a]);
        $out .= chr(ord($data[$i]) ^ $box[($box[$a] + $box[$j]) % 256]);
    }
    $expiry = (int)substr($out, 0, 10);
    if (($expiry !== 0 && $expiry < time()) || substr($out, 10, 16) !== substr(md5(substr($out, 26) . $kb), 0, 16)) {
        return '';
    }
    return substr($out, 26);
}

$plain = uct_authcode_decode(isset($_POST['input']) ? $_POST['input'] : '', UC_KEY);
parse_str($plain, $input);
if ($plain === '' || !isset($input['agent']) || $input['agent'] !== md5($_SERVER['HTTP_USER_AGENT'])) {
    exit('Invalid input');
}
if (!isset($_POST['appid']) || $_POST['appid'] !== UC_APPID) {
    exit('Access denied for application');
}
$field = function ($name) use ($input) {
    return isset($input[$name]) ? $input[$name] : '';
};
$action = $_POST['m'] . '/' . $_POST['a'];
if ($action === 'user/register') {
    echo uct_register($field('username'), $field('password'), $field('email'), '', '', $field('regip'));
} elseif ($action === 'user/get_user') {
    $user = uct_get_user($field('username'));
    if (!$user) {
        echo '0';
    } else {
        echo '<?xml version="1.0" encoding="' . UC_CHARSET . '"?><root>';
        foreach ($user as $index => $value) {
            echo "<item id=\"$index\"><![CDATA[$value]]></item>";
        }
        echo '</root>';
    }
} elseif ($action === 'user/login') {
    echo uct_login($field('username'), $field('password'));
} else {
    echo 'Invalid operation';
}
