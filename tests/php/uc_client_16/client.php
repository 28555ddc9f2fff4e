<?php
// A stand-in for Discuz! X3.4's uc_client (UCenter 1.6), for the one trait the bridge must meet: it asks
// PHP's get_magic_quotes_gpc(), removed in PHP 8, unless the caller defined MAGIC_QUOTES_GPC first
// (Discuz! itself does).  Otherwise it is ../uc_client, talking to a 1.6 UCenter.
!defined('MAGIC_QUOTES_GPC') && define('MAGIC_QUOTES_GPC', get_magic_quotes_gpc());
require __DIR__ . '/../uc_client/client.php';
