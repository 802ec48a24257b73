Feature: Dependent device logs
  POST /v1/devices/:uuid/logs accepts a log line for a device; the supervisor
  forwards it to the cloud's log stream.

  Background:
    Given the supervisor is running
    And a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And a device "D" of "A" provisioned through the supervisor

  @DEV-LOG-1 @contract
  Scenario: A log line is accepted with 202
    When the gateway app calls POST "/v1/devices/{uuid D}/logs" with body:
      """
      {"message": "detected movement", "timestamp": 1472142960000}
      """
    Then the answer is 202

  @DEV-LOG-1 @contract
  Scenario: Logs for an unknown device are not found
    When the gateway app calls POST "/v1/devices/0123456789abcdef0123456789abcdef/logs" with body:
      """
      {"message": "hello"}
      """
    Then the answer is 404

  @DEV-LOG-1 @HOOK-DEL-1 @contract
  Scenario: Logs for a device awaiting its delete acknowledgement are gone
    Given the supervisor has fetched its target twice more
    And the gateway app answers delete hooks for "D" with 500
    When device "D" is deleted in the cloud
    # checks: HOOK-DEL-1
    Then the supervisor eventually answers GET "/v1/devices/{uuid D}" with 410 "Device deleted"
    # checks: DEV-LOG-1
    When the gateway app calls POST "/v1/devices/{uuid D}/logs" with body:
      """
      {"message": "hello"}
      """
    Then the answer is 410

  @DEV-LOG-2 @CLOUD-LOGS @reference
  Scenario: Log lines reach the cloud tagged with the device, in order, exactly once
    Given a device "E" of "A" provisioned through the supervisor
    When the gateway app sends these log lines:
      | device | message | timestamp     | isSystem |
      | D      | one     | 1700000000001 | false    |
      | E      | other   | 1700000000002 | true     |
      | D      | two     | 1700000000003 | false    |
      | D      | three   | 1700000000004 | false    |
    # Held for 10 retry intervals: a batch sent again after the cloud took
    # it, even a few seconds late, shows as a line too many.
    # checks: DEV-LOG-2
    Then the cloud eventually received exactly these log lines, and no more within 10 retry intervals:
      | device | message | timestamp     | isSystem |
      | D      | one     | 1700000000001 | false    |
      | E      | other   | 1700000000002 | true     |
      | D      | two     | 1700000000003 | false    |
      | D      | three   | 1700000000004 | false    |

  @DEV-LOG-2 @reference
  Scenario: A missing timestamp is the receive time in milliseconds
    When the gateway app sends the log line "no clock" for "D" without a timestamp
    Then the cloud eventually received the log line "no clock" for "D" stamped with the time it was sent

  @DEV-LOG-2 @reference
  Scenario: Log lines sent during a cloud outage arrive once it is back
    Given the cloud is unreachable
    When the gateway app sends these log lines:
      | device | message | timestamp     | isSystem |
      | D      | a       | 1700000000001 | false    |
      | D      | b       | 1700000000002 | false    |
      | D      | c       | 1700000000003 | false    |
    And the cloud is reachable again
    Then the cloud eventually received exactly these log lines, and no more within 10 retry intervals:
      | device | message | timestamp     | isSystem |
      | D      | a       | 1700000000001 | false    |
      | D      | b       | 1700000000002 | false    |
      | D      | c       | 1700000000003 | false    |

  @CLOUD-LOGS @DEV-LOG-1 @contract
  Scenario: Accepted log lines reach the cloud as newline-delimited JSON tagged with the device
    Given a device "E" of "A" provisioned through the supervisor
    # checks: DEV-LOG-1
    When the gateway app sends these log lines:
      | device | message | timestamp     | isSystem |
      | D      | first   | 1700000000001 | false    |
      | E      | second  | 1700000000002 | true     |
    # checks: CLOUD-LOGS
    Then the cloud eventually received the log line "first" for "D"
    And the cloud eventually received the log line "second" for "E"
    And every log stream request the cloud received is newline-delimited JSON of uuid, message, timestamp and isSystem of this gateway's devices

  # The lines are sent while the cloud is unreachable so that they reach it
  # as one batch, which the cloud refuses whole for its one bad line.
  @DEV-LOG-2 @reference
  Scenario: A batch the cloud refuses for one bad line delivers its other lines once
    Given the cloud refuses every log stream request holding the line "poison"
    And the cloud is unreachable
    When the gateway app sends these log lines:
      | device | message | timestamp     | isSystem |
      | D      | a       | 1700000000001 | false    |
      | D      | poison  | 1700000000002 | false    |
      | D      | c       | 1700000000003 | false    |
    And the cloud is reachable again
    Then the cloud eventually received exactly these log lines, and no more within 10 retry intervals:
      | device | message | timestamp     | isSystem |
      | D      | a       | 1700000000001 | false    |
      | D      | c       | 1700000000003 | false    |
