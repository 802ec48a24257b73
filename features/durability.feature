Feature: Durability across supervisor restarts and crashes
  Hook state, device updates and log lines survive a stop (SIGTERM) and a
  crash (SIGKILL) of the supervisor on the same data directory.

  Background:
    Given the gateway app fetches the assets of every update hook it receives
    And the supervisor is running
    And a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And the supervisor has downloaded release "R1" of "A"

  @HOOK-REF-1 @reference
  Scenario Outline: An acknowledged target is not sent again after a restart
    Given a device "D" of "A" provisioned through the supervisor
    And "D" eventually receives an update hook for release "R1"
    And the supervisor has waited 6 poll intervals
    When the supervisor is <stopped> and started again
    Then no update hook reaches "D" again after the restart, while the contract would have repeated it

    Examples:
      | stopped |
      | stopped |
      | killed  |

  @HOOK-REF-1 @HOOK-202 @reference
  Scenario Outline: The 202 loop goes on after a restart and stops when the gateway reports
    Given the gateway app answers update hooks for "D" with 202
    And a device "D" of "A" provisioned through the supervisor
    And "D" eventually receives 2 update hooks for release "R1"
    When the supervisor is <stopped> and started again
    Then "D" receives the owed update hook within the contract's bound after the restart
    And "D" receives 2 more update hooks for release "R1"
    When the gateway app reports the target of "D"
    Then no further update hook reaches "D" while the contract would have repeated it

    Examples:
      | stopped |
      | stopped |
      | killed  |

  @HOOK-REF-1 @reference
  Scenario: A target reported before a crash is not sent again
    Given the gateway app answers update hooks for "D" with 202
    And a device "D" of "A" provisioned through the supervisor
    And "D" eventually receives an update hook for release "R1"
    And the gateway app reports the target of "D"
    And the supervisor has waited 6 poll intervals
    When the supervisor is killed and started again
    Then no update hook reaches "D" again after the restart, while the contract would have repeated it

  @HOOK-REF-1 @HOOK-DEL-1 @reference
  Scenario: A mark for deletion survives a crash
    Given a device "D" of "A" provisioned through the supervisor
    And "D" eventually receives an update hook for release "R1"
    And the supervisor has fetched its target twice more
    And the gateway app answers delete hooks for "D" with 500
    When device "D" is deleted in the cloud
    And "D" eventually receives a delete hook
    And the supervisor is killed and started again
    Then the supervisor eventually answers GET "/v1/devices/{uuid D}" with 410 "Device deleted"
    And "D" receives the owed delete hook within the contract's bound after the restart
    When the gateway app answers delete hooks for "D" with 200
    Then the supervisor eventually answers GET "/v1/devices/{uuid D}" with 404 "Device not found"

  @HOOK-REF-1 @HOOK-RST-1 @reference
  Scenario: A pending restart request survives a crash and is sent once
    Given a device "D" of "A" provisioned through the supervisor
    And "D" eventually receives an update hook for release "R1"
    And the supervisor has fetched its target twice more
    And the gateway app answers restart hooks for "D" with 500
    When a restart of "D" is requested in the cloud
    And "D" eventually receives a restart hook
    And the supervisor is killed and started again
    And the gateway app answers restart hooks for "D" with 200
    Then "D" receives the owed restart hook within the contract's bound after the restart
    And "D" eventually receives a restart hook answered 200
    And no further restart hook reaches "D" while the contract would have repeated it

  @DEV-PUT-6 @reference
  Scenario: A device update accepted during a cloud outage survives a crash
    Given a device "D" of "A" provisioned through the supervisor
    And the cloud is unreachable
    When the gateway app reports for "D":
      """
      {"status": "Flashing", "is_online": true}
      """
    And the supervisor has tried to send status "Flashing" of "D" to the unreachable cloud
    And the supervisor is killed and started again
    And the cloud is reachable again
    Then the cloud eventually has device "D" with:
      | field     | value      |
      | status    | "Flashing" |
      | is_online | true       |

  @DEV-LOG-2 @reference
  Scenario: Log lines accepted during a cloud outage survive a crash and arrive once
    Given a device "D" of "A" provisioned through the supervisor
    And the cloud is unreachable
    When the gateway app sends these log lines:
      | device | message | timestamp     | isSystem |
      | D      | before  | 1700000000001 | false    |
      | D      | crash   | 1700000000002 | false    |
    And the supervisor is killed and started again
    And the cloud is reachable again
    Then the cloud eventually received exactly these log lines:
      | device | message | timestamp     | isSystem |
      | D      | before  | 1700000000001 | false    |
      | D      | crash   | 1700000000002 | false    |

  @HOOK-REF-1 @reference
  Scenario: Devices and apps are served from the data directory while the cloud is down after a restart
    Given a device "D" of "A" provisioned through the supervisor
    And the cloud is unreachable
    When the supervisor is stopped and started again
    Then the supervisor shows device "D" with:
      | field        | value         |
      | appId        | {app A}       |
      | targetCommit | "{commit R1}" |
    And the dependent apps list is exactly:
      | app | release | config |
      | A   | R1      | {}     |
    And the assets of "A" at release "R1" are exactly:
      | path         | content |
      | firmware.bin | v1      |
