<?php
/**
 * A small hookrpc client in the style of the Vision6 PHP `Api` class: HTTP POST of
 * {"id":N,"method":M,"params":[api_key, ...]} with no "jsonrpc" member, any non-200 status is
 * a transport failure, a reply with a set `result` is success, otherwise `error` says why.
 *
 * Needs nothing but php-cli (no curl extension): it uses PHP's own HTTP stream wrapper.
 *
 *   $api = new Api('http://127.0.0.1:8080/api/jsonrpcserver.php?version=3.3', $key);
 *   $id = $api->addWebhook(['object' => 'contact', 'event' => 'subscribed', 'url' => '...']);
 *   if ($id === false) echo $api->getErrorCode(), ' ', $api->getErrorMessage(), "\n";
 */
class Api
{
    private $url;
    private $apiKey;
    private $timeout;
    private $requestId = 0;
    private $errorCode = 0;
    private $errorMessage = '';
    private $errorData = null;

    public function __construct($url, $apiKey, $timeout = 30)
    {
        $this->url = $url;
        $this->apiKey = $apiKey;
        $this->timeout = $timeout;
    }

    /** `$api->searchWebhooks($criteria)` calls `searchWebhooks(api_key, $criteria)`. */
    public function __call($method, $args)
    {
        array_unshift($args, $this->apiKey);
        return $this->invokeMethod($method, $args);
    }

    /** Returns the result, or false with getErrorCode()/getErrorMessage() set. */
    public function invokeMethod($method, array $params)
    {
        $this->errorCode = 0;
        $this->errorMessage = '';
        $this->errorData = null;
        $request = json_encode([
            'id' => ++$this->requestId,
            'method' => $method,
            'params' => $params,
        ]);
        $context = stream_context_create(['http' => [
            'method' => 'POST',
            'header' => "Content-Type: application/json\r\nAccept: application/json\r\n",
            'content' => $request,
            'timeout' => $this->timeout,
            'ignore_errors' => true,
        ]]);
        $body = @file_get_contents($this->url, false, $context);
        $status = self::statusOf(isset($http_response_header) ? $http_response_header : []);
        if ($body === false || $status !== 200) {
            return $this->fail(-1, "HTTP transport failure (status $status)");
        }
        $response = json_decode($body, true);
        if (!is_array($response) || !array_key_exists('id', $response) || $response['id'] !== $this->requestId) {
            return $this->fail(-2, 'Malformed reply: ' . substr($body, 0, 200));
        }
        if (isset($response['result'])) {
            return $response['result'];
        }
        if (isset($response['error']['code'])) {
            $this->errorData = isset($response['error']['data']) ? $response['error']['data'] : null;
            return $this->fail($response['error']['code'], $response['error']['message']);
        }
        return $this->fail(-2, 'Reply has neither result nor error');
    }

    public function getErrorCode() { return $this->errorCode; }
    public function getErrorMessage() { return $this->errorMessage; }
    public function getErrorData() { return $this->errorData; }

    private function fail($code, $message)
    {
        $this->errorCode = $code;
        $this->errorMessage = $message;
        return false;
    }

    private static function statusOf(array $headers)
    {
        // With redirects, several status lines appear; the last one is the answer.
        $status = 0;
        foreach ($headers as $line) {
            if (preg_match('#^HTTP/\S+\s+(\d{3})#', $line, $m)) {
                $status = (int) $m[1];
            }
        }
        return $status;
    }
}
