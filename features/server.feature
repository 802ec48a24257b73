Feature: Server hygiene
  The API server bounds what a client can hold (SRV-1). These scenarios
  speak raw TCP to the supervisor, slowly. What needs long waits is checked
  by the reference proxy's unit tests with short configured values instead
  (internal/httpserver), since a scenario cannot wait that long: a body sent
  slower than its read deadline (at most 30 s) is cut off, and an idle
  kept-alive connection is closed within 120 s. Waits here allow 0.25 s for
  the observing client's own scheduling, nothing more.

  Background:
    Given the supervisor is running

  @SRV-1 @reference
  Scenario Outline: A request without a valid key is answered 401 at once, without waiting for its body
    When a client sends PUT "/v1/devices/0123456789abcdef0123456789abcdef" <key>, announcing a body of 100000 bytes that it sends one byte every 100 ms
    Then that client is answered 401 within 1 s of its headers

    Examples:
      | key              |
      | without a key    |
      | with a wrong key |

  @SRV-1 @reference
  Scenario: Headers sent too slowly are cut off, and hold up no one else
    When a client sends the headers of a request one byte every 500 ms, never finishing them
    Then meanwhile the gateway app gets 200 from GET "/ping" within 1 s
    And the supervisor closes that client's connection within 30 s of its first byte
