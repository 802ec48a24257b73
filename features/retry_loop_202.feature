Feature: The 202 retry loop
  A 202 answer to an update hook means "I will report when done": the
  supervisor repeats the hook every retry interval until the gateway app
  reports a state equal to the target. Failures are retried too, never faster
  than the retry interval, never two at once to one device, and never for a
  target that has been superseded.

  Background:
    Given the gateway app fetches the assets of every update hook it receives
    And the supervisor is running
    And a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And the supervisor has downloaded release "R1" of "A"

  @HOOK-202 @HOOK-PACE @contract
  Scenario: 202 repeats the hook every retry interval until the gateway reports the target
    Given the gateway app answers update hooks for "D" with 202
    And app "A" has config variable "RATE" set to "9600"
    And app "A" has environment variable "LED" set to "on"
    And a device "D" of "A" provisioned through the supervisor
    When "D" eventually receives 4 update hooks for release "R1"
    Then the hooks to "D" kept the contract's timing
    When the gateway app reports the target of "D"
    Then no further update hook reaches "D" while the contract would have repeated it
    And no two hooks to "D" overlapped

  @HOOK-202 @contract
  Scenario: Reporting only the commit does not stop the loop while the environment differs
    Given the gateway app answers update hooks for "D" with 202
    And a device "D" of "A" provisioned through the supervisor
    And device "D" has environment variable "LED" set to "on"
    And "D" eventually receives an update hook with environment {"LED": "on"}
    When the gateway app reports for "D":
      """
      {"commit": "{commit R1}", "status": "Idle"}
      """
    Then "D" receives 2 more update hooks for release "R1"
    When the gateway app reports for "D":
      """
      {"environment": {"LED": "on"}}
      """
    Then no further update hook reaches "D" while the contract would have repeated it

  @HOOK-202 @contract
  Scenario: Reporting the wrong config does not stop the loop
    Given the gateway app answers update hooks for "D" with 202
    And app "A" has config variable "RATE" set to "9600"
    And a device "D" of "A" provisioned through the supervisor
    And "D" eventually receives an update hook with config {"RATE": "9600"}
    When the gateway app reports for "D":
      """
      {"commit": "{commit R1}", "config": {"RATE": "115200"}}
      """
    Then "D" receives 2 more update hooks for release "R1"

  @HOOK-202 @HOOK-REF-2 @reference
  Scenario: Environment and config never reported count as empty
    Given the gateway app answers update hooks for "D" with 202
    And a device "D" of "A" provisioned through the supervisor
    And "D" eventually receives an update hook for release "R1"
    When the gateway app reports for "D":
      """
      {"commit": "{commit R1}"}
      """
    Then no further update hook reaches "D" while the contract would have repeated it

  @HOOK-202 @HOOK-200 @contract
  Scenario: A 200 during the loop stops it at once
    Given the gateway app answers update hooks for "D" with 202, 202, then 200
    And a device "D" of "A" provisioned through the supervisor
    When "D" eventually receives 3 update hooks for release "R1"
    Then no further update hook reaches "D" while the contract would have repeated it
    And the hooks to "D" kept the contract's timing

  @HOOK-ERR @HOOK-PACE @contract
  Scenario Outline: A failed hook is retried, never faster than the retry interval
    Given the gateway app answers update hooks for "D" with <failure>, <failure>, then 200
    And a device "D" of "A" provisioned through the supervisor
    When "D" eventually receives 3 update hook attempts for release "R1"
    Then the hooks to "D" kept the contract's timing
    And no further update hook reaches "D" while the contract would have repeated it
    And no two hooks to "D" overlapped

    Examples:
      | failure |
      | 500     |
      | 404     |
      | 503     |
      | refuse  |
      | hang    |

  @HOOK-ERR @contract
  Scenario: A hook answered after the hook timeout counts as not delivered
    Given the gateway app answers update hooks for "D" with 200 after 3 hook timeouts, then 200
    And a device "D" of "A" provisioned through the supervisor
    When "D" eventually receives 2 update hook attempts for release "R1"
    Then the hooks to "D" kept the contract's timing
    And no further update hook reaches "D" while the contract would have repeated it

  @HOOK-ERR @contract
  Scenario: An answer within half the hook timeout is an answer
    Given the gateway app answers update hooks for "D" with 200 after half a hook timeout
    And a device "D" of "A" provisioned through the supervisor
    When "D" eventually receives 1 update hook attempt for release "R1"
    Then the hooks to "D" kept the contract's timing
    And "D" eventually receives an update hook for release "R1"
    And no further update hook reaches "D" while the contract would have repeated it

  @HOOK-ERR @contract
  Scenario: Hooks are retried while the gateway app is not listening
    Given the gateway app is not listening
    And a device "D" of "A" provisioned through the supervisor
    And the supervisor has fetched its target twice more
    When the gateway app starts listening
    Then "D" eventually receives an update hook for release "R1"
    And the first hook to "D" after the gateway app listened again came within the contract's bound

  @HOOK-PACE @contract
  Scenario: A superseded target is never sent again
    Given the gateway app answers update hooks for "D" with 202
    And a device "D" of "A" provisioned through the supervisor
    And "D" eventually receives 2 update hooks for release "R1"
    When a release "R2" of "A" holding files is pushed:
      | path         | content |
      | firmware.bin | v2      |
    And "D" eventually receives 3 update hooks for release "R2"
    Then after the first update hook for release "R2", no update hook to "D" carried release "R1"
    And the hooks to "D" kept the contract's timing
    And no two hooks to "D" overlapped

  @HOOK-PACE @contract
  Scenario: Slow answers never lead to overlapping hooks to one device
    Given the gateway app answers update hooks for "D" with 500 after half a hook timeout
    And a device "D" of "A" provisioned through the supervisor
    When "D" eventually receives 4 update hooks for release "R1"
    And device "D" has environment variable "LED" set to "on"
    And "D" eventually receives 2 update hooks with environment {"LED": "on"}
    Then no two hooks to "D" overlapped
    And the hooks to "D" kept the contract's timing

  @HOOK-PACE @contract
  Scenario: Update, restart and delete hooks to one device are paced together
    Given the gateway app answers update hooks for "D" with 202
    And the gateway app answers restart hooks for "D" with 500, then 200
    And the gateway app answers delete hooks for "D" with 500, then 200
    And a device "D" of "A" provisioned through the supervisor
    And "D" eventually receives 2 update hooks for release "R1"
    When a restart of "D" is requested in the cloud
    And "D" eventually receives 2 restart hooks
    And "D" receives 1 more update hook for release "R1"
    And device "D" is deleted in the cloud
    And "D" eventually receives 2 delete hooks
    Then the hooks to "D" kept the contract's timing
    And no two hooks to "D" overlapped

  @HOOK-REF-3 @reference
  Scenario: Failed hooks back off exponentially from the retry interval
    Given the gateway app answers update hooks for "D" with 500
    And a device "D" of "A" provisioned through the supervisor
    When "D" eventually receives 5 update hooks for release "R1"
    Then the gap before the 5th update hook to "D" is at least 2 retry intervals

  @HOOK-REF-3 @reference
  Scenario: Hooks to different devices are delivered concurrently
    Given the gateway app answers update hooks with 200 after half a hook timeout
    And a device "D1" of "A" provisioned through the supervisor
    And a device "D2" of "A" provisioned through the supervisor
    And a device "D3" of "A" provisioned through the supervisor
    When "D1" eventually receives an update hook for release "R1"
    And "D2" eventually receives an update hook for release "R1"
    And "D3" eventually receives an update hook for release "R1"
    Then hooks to at least 2 devices were in flight at once
