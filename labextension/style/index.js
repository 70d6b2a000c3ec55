import './base.css';
import './follow.css';
