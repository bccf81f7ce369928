<?php
/**
 * A Vision6-style session against a live hookrpc: add, read, search, count, publish, delete a
 * webhook, then two bad calls whose error codes are printed. Exits non-zero on any surprise,
 * so CI can run it:  php demo.php http://127.0.0.1:8080/api/jsonrpcserver.php?version=3.3 KEY
 * It may run again, and on an account with webhooks of its own: its webhook has a list of its
 * own, it checks only what it made, and it deletes its webhook even when a check fails.
 */
require __DIR__ . '/Api.php';

$url = isset($argv[1]) ? $argv[1] : 'http://127.0.0.1:8080/api/jsonrpcserver.php?version=3.3';
$key = isset($argv[2]) ? $argv[2] : getenv('HOOKRPC_KEY');
$api = new Api($url, $key);

function expect($what, $ok, $detail = '')
{
    echo ($ok ? 'ok   ' : 'FAIL ') . $what . ($detail !== '' ? ": $detail" : '') . "\n";
    if (!$ok) {
        exit(1);
    }
}

function call_ok($api, $what, $result)
{
    expect($what, $result !== false, $result === false
        ? $api->getErrorCode() . ' ' . $api->getErrorMessage() : json_encode($result));
    return $result;
}

// example.com never receives anything: hookrpc refuses names reserved for documentation.
$list = random_int(100000, 999999999);
$details = [
    'object' => 'contact',
    'event' => 'subscribed',
    'list_id' => $list,
    'url' => "https://example.com/hooks/php-demo-$list",
    'headers' => [['name' => 'x-from', 'value' => 'php']],
];
$id = call_ok($api, 'addWebhook', $api->addWebhook($details));
expect('addWebhook returns an int id', is_int($id) && $id > 0);
register_shutdown_function(function () use ($api, &$id) {
    if ($id !== null) {
        $api->deleteWebhook($id);   // a check failed before the demo deleted it
    }
});

$webhook = call_ok($api, 'getWebhookById', $api->getWebhookById($id));
expect('the webhook reads back', $webhook['url'] === $details['url'] && $webhook['list_id'] === $list
    && $webhook['name'] === 'contact.subscribed' && strpos($webhook['secret'], 'whsec_') === 0);

$found = call_ok($api, 'searchWebhooks', $api->searchWebhooks([['url', 'ends_with', "/php-demo-$list"]], 10, 0, 'id', 'ASC'));
expect('searchWebhooks finds it', count($found) === 1 && $found[0]['id'] === $id);

$count = $api->countWebhooks([['list_id', 'exactly', $list]]);
expect('countWebhooks', $count === 1, json_encode($count));

call_ok($api, 'editWebhook', $api->editWebhook($id, ['description' => 'edited from PHP']));

// Other webhooks of the account (for every list) may take the event too: count this one's.
$event = call_ok($api, 'addEvent', $api->addEvent(['object' => 'contact', 'event' => 'subscribed',
    'list_id' => $list, 'contact_id' => 142, 'data' => ['email' => 'ada@example.com']]));
$stored = call_ok($api, 'getEventById', $api->getEventById($event));
$ours = $api->countDeliveries([['event_id', 'exactly', $event], ['webhook_id', 'exactly', $id]]);
expect('the event fanned out to the webhook', $stored['delivery_count'] >= 1 && $ours === 1,
    json_encode($ours));

expect('deleteWebhook', $api->deleteWebhook($id) === true);
$deleted = $id;
$id = null;

// Bad calls: the error code is what a PHP integration branches on.
$bad = $api->addWebhook(['object' => 'contact', 'event' => 'bulk_updated', 'url' => 'ftp://nowhere']);
echo "error " . $api->getErrorCode() . " " . $api->getErrorMessage() . ": " . json_encode($api->getErrorData()) . "\n";
expect('an invalid webhook is 310 with every problem listed', $bad === false && $api->getErrorCode() === 310
    && count($api->getErrorData()) === 2);

$gone = $api->getWebhookById($deleted);
echo "error " . $api->getErrorCode() . " " . $api->getErrorMessage() . "\n";
expect('a deleted webhook is 350', $gone === false && $api->getErrorCode() === 350);

$nope = $api->invokeMethod('noSuchMethod', [$key]);
expect('an unknown method is 104', $nope === false && $api->getErrorCode() === 104);

$wrong = (new Api($url, str_repeat('0', 64)))->countWebhooks();
expect('a wrong key gives false', $wrong === false);

echo "PHP client: all checks passed\n";
