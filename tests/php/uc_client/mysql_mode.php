<?php
// uc_client's mysql mode, for client.php: UCenter's code in the calling process.
require_once __DIR__ . '/../ucenter/ucenter.php';

function uc_user_register($username, $password, $email, $questionid = '', $answer = '', $regip = '') {
    return uct_register($username, $password, $email, $questionid, $answer, $regip);
}

function uc_get_user($username, $isuid = 0) {
    return uct_get_user($username);
}

function uc_user_login($username, $password) {
    return array(uct_login($username, $password));
}
