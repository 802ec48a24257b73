package fleet

// Words of device names, like the cloud's ("blue-sun", "wild-paper").
var adjectives = []string{
	"blue", "wild", "quiet", "bold", "calm", "dark", "eager", "fancy", "gentle", "happy",
	"icy", "jolly", "keen", "lively", "misty", "noble", "odd", "proud", "rapid", "silent",
	"tiny", "urban", "vivid", "warm", "young", "zesty", "amber", "brave", "crisp", "dusty",
}

var nouns = []string{
	"sun", "paper", "river", "stone", "cloud", "field", "forest", "meadow", "ocean", "rain",
	"snow", "star", "storm", "tree", "wave", "wind", "brook", "dawn", "dew", "dream",
	"fire", "frog", "glade", "haze", "hill", "lake", "leaf", "moon", "pond", "sky",
}
