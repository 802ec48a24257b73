Feature: Delete hooks
  A device that leaves this gateway's target is marked for deletion: the API
  answers 410 for it and the supervisor sends DELETE <base><uuid> until the
  gateway app acknowledges with 200; then the device is gone.

  Background:
    Given the supervisor is running
    And a dependent app "A" with a release "R1" holding files:
      | path         | content |
      | firmware.bin | v1      |
    And a device "D" of "A" provisioned through the supervisor
    And "D" eventually receives an update hook for release "R1"
    And the supervisor has fetched its target twice more

  @HOOK-DEL-1 @HOOK-ADDR-1 @contract
  Scenario: A device deleted in the cloud gets a delete hook, then is gone
    When device "D" is deleted in the cloud
    Then "D" eventually receives a delete hook
    And every hook went to the gateway app's address for its device
    And the supervisor eventually answers GET "/v1/devices/{uuid D}" with 404 "Device not found"
    And the device list is empty

  @HOOK-DEL-1 @contract
  Scenario: Until the gateway acknowledges, the device answers 410 and the hook is retried
    Given the gateway app answers delete hooks for "D" with 500, refuse, 404, then 200
    When device "D" is deleted in the cloud
    Then the supervisor eventually answers GET "/v1/devices/{uuid D}" with 410 "Device deleted"
    And "D" eventually receives 4 delete hooks
    And the supervisor eventually answers GET "/v1/devices/{uuid D}" with 404 "Device not found"
    And no further delete hook reaches "D" while the contract would have repeated it
    And the hooks to "D" kept the contract's timing

  @HOOK-DEL-1 @contract
  Scenario: A device moved to another gateway gets a delete hook
    Given another gateway with a dependent app "B"
    When device "D" is moved to app "B" of the other gateway
    Then "D" eventually receives a delete hook
    And the supervisor eventually answers GET "/v1/devices/{uuid D}" with 404 "Device not found"

  @HOOK-DEL-1 @contract
  Scenario: No update hooks for a device marked for deletion
    Given the gateway app answers delete hooks for "D" with 500
    And the gateway app answers update hooks for "D" with 202
    When device "D" is deleted in the cloud
    And "D" eventually receives 2 delete hooks
    And a release "R2" of "A" holding files is pushed:
      | path         | content |
      | firmware.bin | v2      |
    And the supervisor has downloaded release "R2" of "A"
    Then no update hook for release "R2" reaches "D" while the contract would have sent it

  @HOOK-REF-2 @reference
  Scenario: A whole app removed from the target sends a delete hook for each of its devices
    Given a device "D2" of "A" provisioned through the supervisor
    And "D2" eventually receives an update hook for release "R1"
    When app "A" is removed from the gateway
    Then "D" eventually receives a delete hook
    And "D2" eventually receives a delete hook
    And the device list is eventually empty

  @HOOK-REF-2 @reference
  Scenario: A device re-added to the target after being marked is un-marked
    Given another gateway with a dependent app "B"
    And the gateway app answers delete hooks for "D" with 500
    When device "D" is moved to app "B" of the other gateway
    And "D" eventually receives a delete hook
    And device "D" is moved back to app "A" of this gateway
    Then the supervisor eventually answers GET "/v1/devices/{uuid D}" with 200
    And no further delete hook reaches "D" while the contract would have repeated it
    When the gateway app calls POST "/v1/devices/{uuid D}/logs" with body:
      """
      {"message": "back"}
      """
    Then the answer is 202
