Feature: The exact error messages of the reference proxy
  ERR-2 (reference): error bodies are plain text with the exact messages the
  contract quotes. The contract tier checks only the status and a non-empty
  body (CONTRACT.md "Latitude"); these scenarios hold every quoted message.

  Background:
    Given the supervisor is running
    And a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And a device "D" of "A" provisioned through the supervisor

  @ERR-2 @reference
  Scenario: Every quoted message of provisioning, lookups and assets
    Given a dependent app "X" of another gateway
    When the gateway app calls GET "/v1/devices/0123456789abcdef0123456789abcdef"
    Then the answer is 404 "Device not found"
    And the answer is plain text
    When the gateway app calls POST "/v1/devices" with body:
      """
      {"appId": 0}
      """
    Then the answer is 400 "appId must be a positive integer"
    And the answer is plain text
    When the gateway app calls POST "/v1/devices" with body:
      """
      {"appId": {app X}}
      """
    Then the answer is 400 "Provisioning failed, invalid appId or credentials"
    And the answer is plain text
    And GET "/v1/dependent-apps/987654321/assets/{commit R1}" answers 404 "Not found"

  @ERR-2 @reference
  Scenario Outline: Every quoted message of a refused device update
    When the gateway app calls PUT "/v1/devices/{uuid D}" with body:
      """
      <body>
      """
    Then the answer is 400 "<message>"
    And the answer is plain text

    Examples:
      | body                    | message                                       |
      | {"is_online": "yes"}    | is_online must be a boolean                   |
      | {"status": ""}          | status must be a non-empty string             |
      | {"commit": 123}         | commit must be a non-empty string             |
      | {"environment": "x"}    | environment must be an object                 |
      | {"config": 7}           | config must be an object                      |
      | {"colour": "red"}       | At least one device attribute must be updated |

  @ERR-2 @reference
  Scenario: The quoted message of a device awaiting its delete acknowledgement
    Given the gateway app answers delete hooks for "D" with 500
    When device "D" is deleted in the cloud
    Then the supervisor eventually answers GET "/v1/devices/{uuid D}" with 410 "Device deleted"
    When the gateway app calls GET "/v1/devices/{uuid D}"
    Then the answer is 410 "Device deleted"
    And the answer is plain text
