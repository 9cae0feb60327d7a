complete -c mq-pin -s c -d 'Create session NAME running COMMAND (default: your shell), detached' -r
complete -c mq-pin -s a -d 'Attach to session NAME: its history, then live; what you type goes to the program' -r
complete -c mq-pin -s w -d 'Write TEXT and a newline (or standard input) to the program\'s input' -r
complete -c mq-pin -s k -d 'End the program of session NAME (hangup, then kill) and remove the session' -r
complete -c mq-pin -s m -d 'Where sessions live (an mqfs mount point; mounted if nothing is)' -r -F
complete -c mq-pin -s e -d 'The detach key: ^X for a control key, or none' -r
complete -c mq-pin -l completions -d 'Print a completion script for SHELL (bash, zsh, fish, ...) and exit' -r -f -a "bash\t''
elvish\t''
fish\t''
powershell\t''
zsh\t''"
complete -c mq-pin -l supervise -r
complete -c mq-pin -l rows -r
complete -c mq-pin -l cols -r
complete -c mq-pin -s l -d 'List sessions: NAME, then running PID, exited STATUS, or lost'
complete -c mq-pin -l no-pty -d 'Run the program with plain files, not on a pseudo-terminal'
complete -c mq-pin -s h -l help -d 'Print help'
complete -c mq-pin -s V -l version -d 'Print version'
