Feature: API key, readiness, errors and request bodies
  Every route of the supervisor API needs the API key; /ping answers without
  one so that a gateway app can wait for the supervisor. Errors use exactly the
  statuses of the contract; bodies are bounded and must be JSON.

  Background:
    Given the supervisor is running

  @AUTH-1 @contract
  Scenario Outline: The API key is accepted in the query and in both header schemes
    When the gateway app calls GET "<path>" with the key in <where>
    Then the answer is 200

    Examples:
      | path               | where                       |
      | /v1/devices        | the query                   |
      | /v1/devices        | a Bearer header             |
      | /v1/devices        | an ApiKey header            |
      | /v1/devices        | a lower-case bearer header  |
      | /v1/devices        | an upper-case APIKEY header |
      | /v1/dependent-apps | the query                   |
      | /v1/dependent-apps | a Bearer header             |

  @AUTH-1 @contract
  Scenario Outline: A missing or wrong key is refused on every route, known or not
    When the gateway app calls <method> "<path>" with <credentials>
    Then the answer is 401

    Examples:
      | method | path                                | credentials                |
      | GET    | /v1/devices                         | no key                     |
      | GET    | /v1/devices                         | the wrong key in the query |
      | GET    | /v1/devices                         | the wrong key in a header  |
      | GET    | /v1/dependent-apps                  | no key                     |
      | GET    | /v1/dependent-apps/1/assets/abc     | no key                     |
      | POST   | /v1/devices                         | no key                     |
      | GET    | /v1/devices/0123456789abcdef        | the wrong key in a header  |
      | PUT    | /v1/devices/0123456789abcdef        | no key                     |
      | POST   | /v1/devices/0123456789abcdef/logs   | the wrong key in the query |
      | GET    | /                                   | no key                     |
      | GET    | /no/such/route                      | the wrong key in a header  |

  @AUTH-1 @contract
  Scenario Outline: A wrong key is refused under every scheme
    When the gateway app calls <method> "<path>" with the wrong key in <where>
    Then the answer is 401

    Examples:
      | method | path               | where                       |
      | GET    | /v1/devices        | the query                   |
      | GET    | /v1/devices        | a Bearer header             |
      | GET    | /v1/devices        | an ApiKey header            |
      | GET    | /v1/devices        | a lower-case bearer header  |
      | GET    | /v1/devices        | an upper-case APIKEY header |
      | GET    | /v1/devices        | a lower-case apikey header  |
      | GET    | /v1/dependent-apps | an ApiKey header            |
      | POST   | /v1/devices        | an ApiKey header            |
      | GET    | /                  | an ApiKey header            |

  @AUTH-1 @contract
  Scenario: A key in an unknown header scheme is refused
    When the gateway app calls GET "/v1/devices" with the key in a Basic header
    Then the answer is 401

  @AUTH-3 @contract
  Scenario: /ping answers without a key
    When the gateway app calls GET "/ping" with no key
    Then the answer is 200 "OK"

  @AUTH-2 @ERR-2 @reference
  Scenario: A refused key is not echoed and errors are plain text
    When the gateway app calls GET "/v1/devices" with the wrong key in the query
    Then the answer is 401 "Unauthorized"
    And the answer is plain text
    And the answer does not contain the wrong key
    When the gateway app calls GET "/v1/devices/0123456789abcdef0123456789abcdef"
    Then the answer is 404 "Device not found"
    And the answer is plain text
    And the answer does not contain the API key
    And the supervisor's output never contains the API key

  @BODY-1 @contract
  Scenario Outline: A malformed JSON body is refused
    Given a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And a device "D" of "A" provisioned through the supervisor
    When the gateway app calls <method> "<path>" with body:
      """
      {"appId": 1,
      """
    Then the answer is 400

    Examples:
      | method | path                  |
      | POST   | /v1/devices           |
      | PUT    | /v1/devices/{uuid D}  |
      | POST   | /v1/devices/{uuid D}/logs |

  @BODY-1 @contract
  Scenario Outline: A body over 10 MiB is refused
    Given a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And a device "D" of "A" provisioned through the supervisor
    When the gateway app calls <method> "<path>" with a JSON body of 11 MiB
    Then the answer is 413

    Examples:
      | method | path                      |
      | POST   | /v1/devices               |
      | PUT    | /v1/devices/{uuid D}      |
      | POST   | /v1/devices/{uuid D}/logs |

  @BODY-1 @contract
  Scenario Outline: A body of exactly 10 MiB is judged on its content, one byte more is refused
    Given a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And a device "D" of "A" provisioned through the supervisor
    When the gateway app calls <method> "<path>" with the body <body> padded to 10 MiB
    Then the answer is <status>
    When the gateway app calls <method> "<path>" with the body <body> padded to 10 MiB and one byte
    Then the answer is 413

    Examples:
      | method | path                      | body                             | status |
      | PUT    | /v1/devices/{uuid D}      | {"status": "…"}                  | 200    |
      | POST   | /v1/devices/{uuid D}/logs | {"message": "…"}                 | 202    |
      | POST   | /v1/devices               | {"appId": 0, "note": "…"}        | 400    |
